//! Static pages served by the gateway in the embedded default: the per-item
//! buyer page rendered from `static-cdn/item.html`, and its assets; the
//! operators' live dashboard (`static-cdn/admin/`) and its assets.
//!
//! The files are compiled in so the binary runs from any directory; in
//! production a CDN serves the same files.

use crate::app::App;
use crate::error::ApiError;
use crate::web::{self, Resp};
use hyper::StatusCode;
use std::path::{Path, PathBuf};

const ITEM_TEMPLATE: &str = include_str!("../../static-cdn/item.html");
const APP_JS: &str = include_str!("../../static-cdn/app.js");
const STYLE_CSS: &str = include_str!("../../static-cdn/style.css");
const DASHBOARD_HTML: &str = include_str!("../../static-cdn/admin/index.html");
const DASHBOARD_JS: &str = include_str!("../../static-cdn/admin/dashboard.js");
const DASHBOARD_CSS: &str = include_str!("../../static-cdn/admin/dashboard.css");
// uPlot, vendored (version in static-cdn/README.md).
const UPLOT_JS: &str = include_str!("../../static-cdn/admin/vendor/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("../../static-cdn/admin/vendor/uPlot.min.css");

pub fn item(app: &App, file: &str) -> Result<Resp, ApiError> {
    let id = file
        .strip_suffix(".html")
        .ok_or_else(|| ApiError::not_found("no such page"))?;
    let live = crate::usecase::campaigns::find(app, id)?;
    let c = live.get();
    let page = render_item(c.id.as_str(), &c.title, c.price_cents, c.stock_total);
    Ok(page_response(web::bytes(
        StatusCode::OK,
        "text/html; charset=utf-8",
        page,
    )))
}

pub fn render_item(id: &str, title: &str, price_cents: u64, stock_total: u64) -> String {
    ITEM_TEMPLATE
        .replace("{{campaign_id}}", &escape(id))
        .replace("{{title}}", &escape(title))
        .replace(
            "{{price}}",
            &format!("{}.{:02}", price_cents / 100, price_cents % 100),
        )
        .replace("{{stock_total}}", &stock_total.to_string())
}

/// Writes the item page and the shared assets under `dir` as a CDN would
/// serve them (`items/{id}.html`, `static/app.js`, `static/style.css`);
/// returns the page's path. Each file is written to a temporary name and
/// renamed, so a CDN syncing the folder never sees a half-written page.
pub fn publish(dir: &Path, id: &str, page: &str) -> std::io::Result<PathBuf> {
    let items = dir.join("items");
    let statics = dir.join("static");
    std::fs::create_dir_all(&items)?;
    std::fs::create_dir_all(&statics)?;
    write_atomically(&statics.join("app.js"), APP_JS)?;
    write_atomically(&statics.join("style.css"), STYLE_CSS)?;
    let path = items.join(format!("{id}.html"));
    write_atomically(&path, page)?;
    Ok(path)
}

fn write_atomically(path: &Path, contents: &str) -> std::io::Result<()> {
    // A name of this process and call: gateways sharing one CDN folder may
    // publish the same page at once, and must not rename each other's
    // half-written file.
    let tmp = path.with_extension(format!(
        "{}.{:x}.tmp",
        std::process::id(),
        rand::random::<u64>()
    ));
    std::fs::write(&tmp, contents)?;
    std::fs::rename(&tmp, path)
}

pub fn asset(file: &str) -> Result<Resp, ApiError> {
    let (body, kind) = match file {
        "app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        "style.css" => (STYLE_CSS, "text/css; charset=utf-8"),
        _ => return Err(ApiError::not_found("no such asset")),
    };
    Ok(page_response(web::bytes(StatusCode::OK, kind, body)))
}

/// `GET /admin/dashboard`: the operators' live dashboard. It holds no data:
/// its script asks the admin API with the token the operator types in.
pub fn dashboard() -> Resp {
    page_response(web::bytes(
        StatusCode::OK,
        "text/html; charset=utf-8",
        DASHBOARD_HTML,
    ))
}

/// `GET /admin/static/{file}`: the dashboard's script, style and the
/// vendored chart library.
pub fn dashboard_asset(file: &str) -> Result<Resp, ApiError> {
    let (body, kind) = match file {
        "dashboard.js" => (DASHBOARD_JS, "text/javascript; charset=utf-8"),
        "dashboard.css" => (DASHBOARD_CSS, "text/css; charset=utf-8"),
        "uPlot.iife.min.js" => (UPLOT_JS, "text/javascript; charset=utf-8"),
        "uPlot.min.css" => (UPLOT_CSS, "text/css; charset=utf-8"),
        _ => return Err(ApiError::not_found("no such asset")),
    };
    Ok(page_response(web::bytes(StatusCode::OK, kind, body)))
}

/// Cacheable, cookie-free, locked to our own origin and never framed.
fn page_response(r: Resp) -> Resp {
    let mut r = web::with_cache(r, "public, max-age=60");
    r.headers_mut().insert(
        http::header::CONTENT_SECURITY_POLICY,
        http::header::HeaderValue::from_static(
            "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
    );
    // Older browsers ignore `frame-ancestors`: no framing (clickjacking a grab).
    r.headers_mut().insert(
        http::header::X_FRAME_OPTIONS,
        http::header::HeaderValue::from_static("DENY"),
    );
    r.headers_mut().insert(
        http::header::X_CONTENT_TYPE_OPTIONS,
        http::header::HeaderValue::from_static("nosniff"),
    );
    r
}

/// Escapes text for HTML element content and quoted attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_are_escaped_and_price_formatted() {
        let page = render_item("c1", "<script>x</script>", 1_905, 10);
        assert!(!page.contains("<script>x"));
        assert!(page.contains("&lt;script&gt;"));
        assert!(page.contains("19.05"));
        assert!(page.contains("data-campaign-id=\"c1\""));
        assert!(!page.contains("{{"), "every placeholder is filled");
    }
}
