//! Inputs the fuzzer once broke (fuzz/regressions/rewrite/), replayed on every test run
//! with the fuzz target's own laws and requests (fuzz/laws.rs), so they stay fixed
//! without cargo-fuzz.

#[path = "../../../fuzz/laws.rs"]
mod laws;

#[test]
fn fuzz_regressions() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions/rewrite");
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        // Say which input a failing law came from.
        eprintln!("replaying {}", p.display());
        laws::check_all(&std::fs::read(&p).unwrap());
        n += 1;
    }
    assert!(n >= 3, "regression inputs found: {n}");
}
