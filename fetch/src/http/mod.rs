//! HTTP plumbing shared by every registry request: agents (TLS, proxies, timeouts) and the
//! retry policy.

pub mod agent;
pub mod retry;
