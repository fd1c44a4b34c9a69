//! `enable`, `disable` and `status` through the real libvirt API, against libvirt's test
//! driver (no daemon). Each `virt-systemd` process opens `test:///PATH/node.xml` afresh, so
//! what one process defines is gone for the next: these tests check what one invocation
//! prints and exits with. Enable-then-dumpxml within one connection is tested in the binary's
//! own unit tests (src/bin/virt-systemd/enable.rs).

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

#[path = "common/bins.rs"]
mod bins;

const BIN: &str = env!("CARGO_BIN_EXE_virt-systemd");
const WEB_UUID: &str = "5f0c3a52-6f7e-4d1a-9a53-0d2f8c1e4b20";

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/admin_data")
}

fn uri(node: &Path) -> String {
    format!("test://{}", node.display())
}

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    // The libvirt commands run in virt-systemd-libvirt, which virt-systemd execs.
    bins::dir();
    let mut c = Command::new(BIN);
    c.args(args)
        .env_remove("LIBVIRT_DEFAULT_URI")
        .env("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/bus")
        .env("VIRT_SYSTEMD_VHOST_VSOCK", "/nonexistent/vhost-vsock");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The shipped node plus "web": running, enabled (with a secret-looking credential value),
/// vsock CID 7. Returns (node file, config file whose state dir has a hook state for web).
fn node_with_web(dir: &Path) -> (PathBuf, PathBuf) {
    let plain = format!(
        "<domain type='test'>\n  <name>web</name>\n  <uuid>{WEB_UUID}</uuid>\n  <memory>1048576</memory>\n  <os>\n    <type>hvm</type>\n  </os>\n  <devices>\n    <vsock model='virtio'>\n      <cid auto='yes' address='7'/>\n    </vsock>\n  </devices>\n</domain>\n"
    );
    let req = virt_systemd::intent::Request {
        hostname: Some("web".into()),
        credentials: vec![virt_systemd::credential::Credential {
            name: "api.token".into(),
            value: virt_systemd::credential::Value::Text("s3cr3t-VALUE".into()),
        }],
        ..Default::default()
    };
    let web = virt_systemd::render::rewrite(&plain, &Default::default(), &req, &|| unreachable!())
        .unwrap()
        .text;
    let node = std::fs::read_to_string(data().join("node.xml")).unwrap();
    let node = node.replace("</node>", &format!("{web}</node>\n"));
    let path = dir.join("node.xml");
    std::fs::write(&path, node).unwrap();

    let state = dir.join("state");
    std::fs::create_dir_all(state.join("domains")).unwrap();
    std::fs::write(
        state.join("domains").join(format!("{WEB_UUID}.json")),
        format!(
            r#"{{"domain":"web","uuid":"{WEB_UUID}","machine":"web","registered":true,"how":"register","api":"WithNetwork","leader":4242,"vsock_cid":7}}"#
        ),
    )
    .unwrap();
    let cfg = dir.join("config.toml");
    std::fs::write(
        &cfg,
        format!("[hook]\nstate_dir = \"{}\"\n", state.display()),
    )
    .unwrap();
    (path, cfg)
}

#[test]
fn enable_dry_run_prints_a_diff_and_changes_nothing() {
    let node = data().join("node.xml");
    let o = run(
        &[
            "-c",
            &uri(&node),
            "enable",
            "off",
            "--dry-run",
            "--hostname",
            "h1",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let d = stdout(&o);
    assert!(
        d.starts_with("--- off (current definition)\n+++ off (after enable)\n@@ -"),
        "{d}"
    );
    assert!(
        d.contains("\n+      <entry>io.systemd.credential:system.hostname=h1</entry>\n"),
        "{d}"
    );
    assert!(d.contains("\n+    <smbios mode='sysinfo'/>\n"), "{d}");
    // No vhost-vsock here: no vsock device, and a note saying so.
    assert!(!d.contains("<vsock"), "{d}");
    assert!(
        stderr(&o).contains("leaving the vsock device out"),
        "{}",
        stderr(&o)
    );
    // Every line of the diff is a header, hunk, context or change line.
    assert!(d
        .lines()
        .all(|l| l.starts_with(['-', '+', ' ', '@']) || l == "\\ No newline at end of file"));

    // With a usable device (any openable file stands in), or --vsock, the device comes.
    let o = run(
        &["-c", &uri(&node), "enable", "off", "-n"],
        &[("VIRT_SYSTEMD_VHOST_VSOCK", "/dev/null")],
    );
    assert!(
        stdout(&o).contains("+    <vsock model='virtio'>"),
        "{}",
        stdout(&o)
    );
    // A dry run needs no secure fields: it works read-only.
    let o = run(
        &["-c", &uri(&node), "-r", "enable", "off", "-n", "--vsock"],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("+    <vsock model='virtio'>"),
        "{}",
        stdout(&o)
    );
    assert!(!stderr(&o).contains("leaving the vsock"), "{}", stderr(&o));
}

#[test]
fn enable_and_disable_report_what_they_did() {
    let node = data().join("node.xml");
    let u = uri(&node);
    let o = run(&["-c", &u, "enable", "off", "--hostname", "h1"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "domain 'off' enabled\n");
    // A running domain: defined, effective at the next start.
    let o = run(&["-c", &u, "enable", "on", "--hostname", "h1"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("takes effect at its next start"),
        "{}",
        stderr(&o)
    );
    // By UUID and by ID, like virsh.
    let o = run(
        &[
            "-c",
            &u,
            "enable",
            "5f0c3a52-6f7e-4d1a-9a53-0d2f8c1e4b10",
            "-n",
        ],
        &[],
    );
    assert!(stdout(&o).starts_with("--- off "), "{}", stderr(&o));
    // Nothing of ours to remove: success, and a note.
    let o = run(&["-c", &u, "disable", "off"], &[]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(stdout(&o), "");
    assert!(stderr(&o).contains("nothing to remove"), "{}", stderr(&o));

    let dir = tempfile::tempdir().unwrap();
    let (node, _) = node_with_web(dir.path());
    let u = uri(&node);
    let o = run(&["-c", &u, "disable", "web", "--dry-run"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let d = stdout(&o);
    assert!(d.contains("\n-      <entry>io.systemd.credential:system.hostname=web</entry>\n"));
    assert!(d.contains("io.systemd.credential:api.token"), "{d}");
    assert!(
        !d.lines().skip(2).any(|l| l.starts_with('+')),
        "disable only removes:\n{d}"
    );
    assert!(!d.contains("-  <uuid>"), "the UUID stays:\n{d}");
    // Enabling what is enabled, unchanged: nothing to change.
    let o = run(&["-c", &u, "enable", "web", "-n"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "", "{}", stdout(&o));
    assert!(stderr(&o).contains("nothing to change"), "{}", stderr(&o));
    let o = run(&["-c", &u, "disable", "web"], &[]);
    assert_eq!(stdout(&o), "domain 'web' disabled\n", "{}", stderr(&o));
}

/// The documented JSON schema (src/cli/status.rs): exact key sets and types.
fn check_schema(v: &Value) {
    let keys = |o: &Value| -> Vec<String> {
        let mut k: Vec<String> = o.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(v), ["domains", "machined", "version"]);
    assert_eq!(v["version"], 1);
    assert!(v["machined"].is_null() || v["machined"].is_string());
    for d in v["domains"].as_array().unwrap() {
        let mut want = vec![
            "name",
            "uuid",
            "persistent",
            "state",
            "running",
            "enabled",
            "credentials",
            "unmanaged",
            "vsock",
            "vsock_cid",
            "machine",
            "registered",
            "readiness",
            "drift",
            "restart_pending",
            "machinectl",
        ];
        want.sort();
        assert_eq!(keys(d), want, "{d}");
        assert!(d["name"].is_string());
        assert!(d["uuid"].is_string() || d["uuid"].is_null());
        assert!(d["state"].is_string());
        assert!(
            d["machinectl"].is_null() || d["machinectl"] == "signals",
            "{d}"
        );
        for b in [
            "persistent",
            "running",
            "enabled",
            "vsock",
            "restart_pending",
        ] {
            assert!(d[b].is_boolean(), "{b}: {d}");
        }
        for a in ["credentials", "unmanaged", "drift"] {
            assert!(d[a].as_array().unwrap().iter().all(Value::is_string), "{a}");
        }
        assert!(d["vsock_cid"].is_null() || d["vsock_cid"].is_u64());
        assert!(d["registered"].is_null() || d["registered"].is_boolean());
        assert!(d["readiness"].is_null());
        if !d["machine"].is_null() {
            let mut mk = vec![
                "name",
                "state",
                "service",
                "class",
                "id",
                "leader",
                "unit",
                "vsock_cid",
            ];
            mk.sort();
            assert_eq!(keys(&d["machine"]), mk);
        }
    }
}

#[test]
fn status_json_schema_and_contents() {
    let dir = tempfile::tempdir().unwrap();
    let (node, cfg) = node_with_web(dir.path());
    let o = run(
        &[
            "-c",
            &uri(&node),
            "--config",
            cfg.to_str().unwrap(),
            "status",
            "--json",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        !text.contains("s3cr3t"),
        "a credential value leaked:\n{text}"
    );
    let v: Value = serde_json::from_str(&text).unwrap();
    check_schema(&v);
    // machined cannot be reached here: status still succeeds and says why.
    assert!(
        v["machined"].as_str().unwrap().contains("system bus"),
        "{}",
        v["machined"]
    );
    let names: Vec<&str> = v["domains"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["off", "on", "tr", "web"]);
    let d = |n: &str| {
        v["domains"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["name"] == n)
            .unwrap()
            .clone()
    };
    let web = d("web");
    assert_eq!(web["enabled"], true);
    assert_eq!(web["running"], true);
    assert_eq!(web["state"], "running");
    assert_eq!(web["vsock_cid"], 7);
    assert_eq!(web["registered"], true);
    assert_eq!(
        web["credentials"],
        serde_json::json!(["system.hostname", "api.token", "vmm.notify_socket"])
    );
    assert_eq!(web["drift"], serde_json::json!([]));
    let off = d("off");
    assert_eq!(off["enabled"], false);
    assert_eq!(off["running"], false);
    assert_eq!(off["state"], "shut off");
    assert_eq!(off["vsock_cid"], Value::Null);
    assert_eq!(off["registered"], Value::Null);
    assert_eq!(d("on")["vsock_cid"], 42);
    assert_eq!(d("tr")["persistent"], false);

    // Selected domains, in the order asked; read-only is enough.
    let o = run(
        &["-c", &uri(&node), "-r", "status", "--json", "web", "off"],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    check_schema(&v);
    let names: Vec<&str> = v["domains"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["web", "off"]);
}

#[test]
fn status_table() {
    let dir = tempfile::tempdir().unwrap();
    let (node, cfg) = node_with_web(dir.path());
    let o = run(
        &[
            "-c",
            &uri(&node),
            "--config",
            cfg.to_str().unwrap(),
            "status",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let t = stdout(&o);
    assert!(!t.contains("s3cr3t"), "{t}");
    let lines: Vec<&str> = t.lines().collect();
    assert!(
        lines[0].starts_with("DOMAIN  STATE                ENABLED  CREDENTIALS"),
        "{t}"
    );
    assert!(lines[1].starts_with("off     shut off "), "{t}");
    assert!(
        lines[3].starts_with("tr      running (transient)  no "),
        "{t}"
    );
    assert!(
        lines[4].starts_with(
            "web     running              yes      system.hostname,api.token,vmm.notify_socket  7 "
        ),
        "{t}"
    );
    assert!(t.contains("\nmachined: "), "{t}");
}
