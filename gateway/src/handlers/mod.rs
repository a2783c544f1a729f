//! Request handlers, one module per audience: each reads the request,
//! calls a use case (`crate::usecase`) and writes its typed answer
//! (`crate::api`).

pub mod admin;
pub mod buyer;
pub mod service;
