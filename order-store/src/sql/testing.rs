//! Test helpers shared by the SQL backends' tests.

use crate::contract::ContractError;
use std::path::Path;

/// Copies the migrations of `backend` (`sqlite` or `mysql`) whose file names
/// sort before `version` (e.g. `"0004"`) into `into`, for a database
/// migrated as an older release left it. The copies are byte for byte, so
/// their checksums match the embedded ones and the store can migrate on.
pub(crate) fn migrations_before(
    backend: &str,
    version: &str,
    into: &Path,
) -> Result<(), ContractError> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(backend);
    std::fs::create_dir_all(into)?;
    let mut copied = 0;
    for entry in std::fs::read_dir(&src)? {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_string_lossy().as_ref() < version {
            std::fs::copy(entry.path(), into.join(&name))?;
            copied += 1;
        }
    }
    if copied == 0 {
        return Err(format!(
            "no {backend} migration before {version} in {}",
            src.display()
        )
        .into());
    }
    Ok(())
}

/// A campaign row as a release before migration 0004 inserted it (no
/// `ledger_gen` column yet).
pub(crate) const PRE_0004_CAMPAIGN_SQL: &str = "INSERT INTO campaigns (id, title, price_cents, \
     stock_total, starts_at_ms, ends_at_ms, per_user_limit, quiz, payment_window_s, load_test, \
     control) VALUES ('old', 'Old', 100, 5, 1000, 9000, 1, 0, 900, 0, 'active')";
