//! Tests of the `opsq` binary as a user runs it: `serve` as a real process (killed
//! with SIGKILL and restarted), and `admin` against the same data directory.

mod admin;
mod clc_sdk;
mod crash;
mod harness;
mod nodes;
mod openapi;
mod pg;
mod restart;
