//! Writer tests, in one test binary to keep link time down: `paced` runs on
//! paused tokio time against a scripted store, `e2e` runs a real file log
//! into a real SQLite store.

mod e2e;
mod paced;
mod support;
