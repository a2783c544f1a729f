//! Rebuilds the crate when a migration changes: `sqlx::migrate!` embeds the
//! migration files at compile time and stable Rust cannot track them itself.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
