//! Fuzz the rewriter: arbitrary bytes as a domain XML, through decode → rewrite → strip.
//!
//! Laws checked whenever `rewrite` accepts the input (errors are fine, panics are not):
//! 1. the output is well-formed XML (xtree and roxmltree parse it, as law 0 qualifies);
//! 2. rewriting the output again with the same request gives the same bytes;
//! 3. `strip(Full)` of the output succeeds and leaves no virt-systemd record behind;
//!    when the input had no record of ours, it gives back exactly the input bytes (unless
//!    `--force` replaced a hand-written entry, which is gone for good by design).
//!
//! Three requests are tried on every input: a realistic flag set (hostname, machine ID, SSH
//! key, text credentials with characters to escape, a fw_cfg secret credential, kernel
//! command line), the bare defaults (vsock + notify only), and the full set with `--force`.

#![no_main]

#[path = "../laws.rs"]
mod laws;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| laws::check_all(data));
