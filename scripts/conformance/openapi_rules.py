#!/usr/bin/env python3
"""Statuses every operation of gateway/openapi.json must list, by rule.

Schemathesis only sees the statuses a run happens to provoke; these come
from the server's structure and hold whatever a run provokes:

- any request: 500 `internal` (a bug) and 503 (the per-request timeout
  answers `overloaded`);
- a request whose body is read (every admin request, and every operation
  with a request body or that reads one: pay): 400 (unreadable body,
  non-numeric Content-Length), 408 (body-read timeout), 413 (body limit);
- under /admin/: 401 (the admin token is checked before anything else),
  except the operators' dashboard page and its assets (PUBLIC_PAGES: they
  hold no data, are served without the token and read no body);
- under /api/: 429 (the per-address and global rate limits);
- an operation with a bearer security scheme: 401.

405 is not an operation's status (it answers methods the path does not
have; the convention is in the document's description and the response
`MethodNotAllowed`).

    python3 scripts/conformance/openapi_rules.py          # check, exit 1 on a gap
    python3 scripts/conformance/openapi_rules.py --fix    # add the missing ones
"""
import json
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "gateway" / "openapi.json"
METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
# Operations that read a body although the document gives them none.
READS_BODY = {("post", "/api/v1/orders/{order_id}/pay")}
# Pages under /admin/ served without the admin token (gateway/src/routes.rs).
PUBLIC_PAGES = {("get", "/admin/dashboard"), ("get", "/admin/static/{file}")}
# Which shared response stands for each status a rule adds.
COMPONENT = {
    "400": "BadRequest",
    "401": "Unauthorized",
    "408": "RequestTimeout",
    "413": "PayloadTooLarge",
    "429": "RateLimited",
    "500": "Internal",
    "503": "Overloaded",
}


def required(path, method, op):
    need = {"500": "any request", "503": "the per-request timeout"}
    admin = path.startswith("/admin/") and (method, path) not in PUBLIC_PAGES
    reads_body = admin or "requestBody" in op or (method, path) in READS_BODY
    if reads_body:
        for status in ("400", "408", "413"):
            need[status] = "its body is read"
    if admin:
        need["401"] = "the admin token"
    if path.startswith("/api/"):
        need["429"] = "the /api/ rate limits"
    if op.get("security"):
        need["401"] = "its bearer token"
    return need


def gaps(doc):
    out = []
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method not in METHODS:
                continue
            responses = op.get("responses", {})
            for status, why in required(path, method, op).items():
                if status not in responses:
                    out.append((path, method, status, why))
    return out


def main():
    fix = "--fix" in sys.argv[1:]
    text = DOC.read_text()
    doc = json.loads(text)
    found = gaps(doc)
    if fix and found:
        components = doc["components"]["responses"]
        for _, _, status, _ in found:
            name = COMPONENT[status]
            if name not in components:
                sys.exit(f"openapi_rules: no response component {name} to add for {status}")
        for path, method, status, _ in found:
            doc["paths"][path][method]["responses"][status] = {
                "$ref": f"#/components/responses/{COMPONENT[status]}"
            }
        for op in (o for item in doc["paths"].values() for m, o in item.items() if m in METHODS):
            op["responses"] = dict(sorted(op["responses"].items()))
        # Re-read right before writing: others may edit the file meanwhile.
        if DOC.read_text() != text:
            sys.exit("openapi_rules: openapi.json changed while fixing; run again")
        DOC.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"openapi_rules: added {len(found)} responses")
        return
    for path, method, status, why in found:
        print(f"openapi.json: {method.upper()} {path} lacks {status} ({why})", file=sys.stderr)
    if found:
        sys.exit(f"openapi_rules: {len(found)} statuses missing (--fix adds them)")
    print("openapi_rules: every operation lists the statuses its rules require")


if __name__ == "__main__":
    main()
