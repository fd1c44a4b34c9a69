//! Criterion benchmarks of the library rewriter (issue 2, "Performance").
//!
//! Inputs: `bench/typical.xml` (a ~6 KiB q35 domain, committed) and `bench/out/large.xml`
//! (~1 MiB: 1000 disks, 128 NICs, large foreign metadata), which `bench/make-inputs.sh`
//! generates deterministically; it is run here when the file is missing.
//!
//! Groups (each on both inputs, throughput in input bytes):
//! - `parse`: `DomainXml::parse` only (quick-xml's events, the checks, the partial tree),
//!   the floor for everything else;
//! - `rewrite`: a fresh domain with a realistic flag set (hostname, machine ID, an SSH key,
//!   two credentials, kernel command line, vsock and notify from the defaults);
//! - `rewrite_again`: the same request on its own output (strip, then re-render);
//! - `strip`: `strip(Full)` of the rewritten output back to the original bytes.
//!
//! `cargo bench --bench rewrite` runs them all; `cargo bench --bench rewrite -- rewrite/`
//! selects by name.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use virt_systemd_core::config::RewriteDefaults;
use virt_systemd_core::credential::{Credential, Value};
use virt_systemd_core::domain::DomainXml;
use virt_systemd_core::intent::Request;
use virt_systemd_core::render::{self, strip::Mode};

const TYPICAL: &str = include_str!("../../../bench/typical.xml");
const UUID: &str = "6c1e1a2b-7d1f-4c57-9c4e-1a2b3c4d5e6f";

fn new_uuid() -> String {
    UUID.to_string()
}

/// The large input, generated on first use.
fn large() -> String {
    let root = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    let path: PathBuf = root.join("bench/out/large.xml");
    if !path.exists() {
        let st = Command::new("bash")
            .arg(root.join("bench/make-inputs.sh"))
            .arg(root.join("bench/out"))
            .stdout(std::process::Stdio::null())
            .status()
            .expect("run bench/make-inputs.sh");
        assert!(st.success(), "bench/make-inputs.sh failed: {st}");
    }
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The flag set of `bench/rewrite-vs-xmlstarlet.sh`, as a library request.
fn request() -> Request {
    let text = |name: &str, v: &str| Credential {
        name: name.into(),
        value: Value::Text(v.into()),
    };
    Request {
        hostname: Some("web-01".into()),
        machine_id: Some(true),
        ssh_keys: vec![
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHx3lB1dyZxU4o8Zq1hYtKj2m2m0A6v1wK5E7Y3Vb0cD \
             admin@example.org"
                .into(),
        ],
        credentials: vec![
            text("firstboot.locale", "C.UTF-8"),
            text("firstboot.timezone", "Europe/Berlin"),
        ],
        kernel_cmdline: vec!["console=ttyS0 systemd.journald.forward_to_console=1".into()],
        ..Request::default()
    }
}

fn benches(c: &mut Criterion) {
    let defaults = RewriteDefaults::default();
    let req = request();
    let large = large();
    let inputs: [(&str, &str); 2] = [("typical", TYPICAL), ("large", &large)];

    // Check once, outside the timed loops, that the benchmarked work is the real thing.
    let rewritten: Vec<String> = inputs
        .iter()
        .map(|(name, text)| {
            let out = render::rewrite(text, &defaults, &req, &new_uuid)
                .unwrap_or_else(|e| panic!("rewrite {name}: {e}"));
            assert!(out.text.len() > text.len(), "{name}: nothing inserted");
            let again = render::rewrite(&out.text, &defaults, &req, &new_uuid)
                .unwrap_or_else(|e| panic!("rewrite {name} again: {e}"));
            assert_eq!(again.text, out.text, "{name}: rewrite is not idempotent");
            let back = render::strip(&out.text, Mode::Full)
                .unwrap_or_else(|e| panic!("strip {name}: {e}"));
            assert_eq!(
                back.text, *text,
                "{name}: strip does not give the input back"
            );
            out.text
        })
        .collect();

    let mut g = c.benchmark_group("parse");
    for (name, text) in inputs {
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(name), text, |b, t| {
            b.iter(|| DomainXml::parse(black_box(t)).map(|d| d.root().range().end))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("rewrite");
    for (name, text) in inputs {
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(name), text, |b, t| {
            b.iter(|| render::rewrite(black_box(t), &defaults, &req, &new_uuid))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("rewrite_again");
    for ((name, _), out) in inputs.iter().zip(&rewritten) {
        g.throughput(Throughput::Bytes(out.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(name), out.as_str(), |b, t| {
            b.iter(|| render::rewrite(black_box(t), &defaults, &req, &new_uuid))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("strip");
    for ((name, _), out) in inputs.iter().zip(&rewritten) {
        g.throughput(Throughput::Bytes(out.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(name), out.as_str(), |b, t| {
            b.iter(|| render::strip(black_box(t), Mode::Full))
        });
    }
    g.finish();
}

criterion_group! {
    name = rewrite;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = benches
}
criterion_main!(rewrite);
