//! Packaging checks (fast, no root): the committed man pages and completions are what the
//! clap definitions generate; the .deb, the RPM spec's %files and the PKGBUILD install the
//! same files, all checked against the one list in `packaging/install-manifest`; the config
//! file, its man page and `crates/core/src/config.rs` agree; the units fit the CLI.
//!
//! The .deb test needs dpkg-deb and dpkg-shlibdeps (Debian), the spec test reads the spec
//! as text (rpmbuild itself runs in `make rpm`), the PKGBUILD test needs bash.

#[path = "common/bins.rs"]
mod bins;
#[path = "../examples/gen-docs.rs"]
mod gen_docs;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const SITE_ZSH: &str = "/usr/share/zsh/site-functions";
const DEBIAN_ZSH: &str = "/usr/share/zsh/vendor-completions";

fn root() -> &'static Path {
    Path::new(ROOT)
}

fn read(rel: &str) -> String {
    fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Where cargo put the binaries of this test build (all three, built: tests/common/bins.rs).
fn bin_dir() -> PathBuf {
    bins::dir().to_path_buf()
}

fn cargo_version() -> String {
    let t: toml::Table = read("Cargo.toml").parse().unwrap();
    t["workspace"]["package"]["version"]
        .as_str()
        .unwrap()
        .to_string()
}

// ---------------------------------------------------------------------------------------
// The manifest, expanded here independently of packaging/install.sh

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    kind: String,
    mode: String,
    path: String,
    /// bin: cargo binary name; link: target; file/conf/man: path in the source tree
    source: String,
}

fn glob_one(pattern: &str) -> Vec<String> {
    let (dir, pat) = pattern.rsplit_once('/').unwrap();
    let (pre, post) = pat.split_once('*').unwrap_or((pat, ""));
    let mut v: Vec<String> = fs::read_dir(root().join(dir))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| {
            if pat.contains('*') {
                n.len() >= pre.len() + post.len() && n.starts_with(pre) && n.ends_with(post)
            } else {
                n == pat
            }
        })
        .map(|n| format!("{dir}/{n}"))
        .collect();
    v.sort();
    v
}

/// The manifest expanded for a distribution with zsh completions in `zsh`; man pages
/// uncompressed.
fn manifest(zsh: &str) -> Vec<Entry> {
    let mut out = Vec::new();
    for (i, line) in read("packaging/install-manifest").lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cols.len(), 4, "install-manifest:{}: {line}", i + 1);
        let path = cols[2].replace("@ZSH_COMPLETIONS@", zsh);
        let e = |path: String, source: &str| Entry {
            kind: cols[0].into(),
            mode: cols[1].into(),
            path,
            source: source.into(),
        };
        if cols[0] == "man" && path.ends_with('/') {
            let found = glob_one(cols[3]);
            assert!(!found.is_empty(), "{} matches nothing", cols[3]);
            for f in found {
                let base = f.rsplit('/').next().unwrap().to_string();
                out.push(e(format!("{path}{base}"), &f));
            }
        } else {
            out.push(e(path, cols[3]));
        }
    }
    out
}

fn paths_of(kind: &str, m: &[Entry]) -> Vec<String> {
    m.iter()
        .filter(|e| e.kind == kind)
        .map(|e| e.path.clone())
        .collect()
}

#[test]
fn manifest_sources_exist_and_paths_are_unique() {
    let m = manifest(SITE_ZSH);
    let mut seen = BTreeSet::new();
    for e in &m {
        assert!(seen.insert(e.path.clone()), "{} listed twice", e.path);
        assert!(e.path.starts_with('/'), "{} is not absolute", e.path);
        match e.kind.as_str() {
            "file" | "conf" | "man" => assert!(
                root().join(&e.source).is_file(),
                "{}: source {} missing",
                e.path,
                e.source
            ),
            "dir" | "bin" | "link" => {}
            k => panic!("unknown kind {k}"),
        }
    }
    // every file's directory chain up to a standard one is owned or standard
    let dirs: BTreeSet<String> = paths_of("dir", &m).into_iter().collect();
    for e in &m {
        let parent = Path::new(&e.path).parent().unwrap().display().to_string();
        if parent.contains("virt-systemd") {
            assert!(
                dirs.contains(&parent),
                "{parent} (of {}) is not a dir entry",
                e.path
            );
        }
    }
}

#[test]
fn every_cargo_binary_is_packaged() {
    // Every [[bin]] of every workspace member.
    let top: toml::Table = read("Cargo.toml").parse().unwrap();
    let cargo: BTreeSet<String> = top["workspace"]["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| format!("{}/Cargo.toml", m.as_str().unwrap()))
        .flat_map(|m| {
            let t: toml::Table = read(&m).parse().unwrap();
            t.get("bin")
                .and_then(|b| b.as_array())
                .into_iter()
                .flatten()
                .map(|b| b["name"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    let packaged: BTreeSet<String> = manifest(SITE_ZSH)
        .into_iter()
        .filter(|e| e.kind == "bin")
        .map(|e| e.source)
        .collect();
    // "#planned bin ..." lines: binaries announced but not yet in Cargo.toml
    let planned: BTreeSet<String> = read("packaging/install-manifest")
        .lines()
        .filter_map(|l| l.strip_prefix("#planned "))
        .filter_map(|l| {
            let c: Vec<&str> = l.split_whitespace().collect();
            (c.first() == Some(&"bin")).then(|| c[3].to_string())
        })
        .collect();
    let now_real: Vec<&String> = planned.intersection(&cargo).collect();
    assert!(
        now_real.is_empty(),
        "{now_real:?} is a [[bin]] of Cargo.toml now: uncomment its #planned lines in \
         packaging/install-manifest and packaging/rpm/virt-systemd.spec"
    );
    assert_eq!(
        cargo, packaged,
        "the [[bin]] targets of Cargo.toml and the bin lines of packaging/install-manifest differ: \
         add the binary to the manifest and to %files in packaging/rpm/virt-systemd.spec"
    );
}

#[test]
fn install_sh_expands_the_manifest_the_same_way() {
    let out = Command::new(root().join("packaging/install.sh"))
        .args(["--list", "--bindir", "/B"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: Vec<Entry> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let c: Vec<&str> = l.split_whitespace().collect();
            Entry {
                kind: c[0].into(),
                mode: c[1].into(),
                path: c[2].into(),
                source: c[3]
                    .trim_start_matches("/B/")
                    .trim_start_matches(&format!("{ROOT}/"))
                    .into(),
            }
        })
        .collect();
    let mut ours = manifest(SITE_ZSH);
    for e in &mut ours {
        if e.kind == "dir" {
            e.source = "-".into();
        }
    }
    assert_eq!(listed, ours);
}

// ---------------------------------------------------------------------------------------
// Generated pages and completions

#[test]
fn generated_man_pages_and_completions_are_current() {
    let fresh = gen_docs::render_all().unwrap();
    let dir = root().join("packaging");
    let mut problems = Vec::new();
    for (rel, data) in &fresh {
        match fs::read(dir.join(rel)) {
            Ok(old) if &old == data => {}
            Ok(_) => problems.push(format!("packaging/{rel} differs")),
            Err(_) => problems.push(format!("packaging/{rel} is missing")),
        }
    }
    for sub in ["man", "completions"] {
        for e in fs::read_dir(dir.join(sub)).unwrap() {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            let rel = format!("{sub}/{name}");
            let generated_kind = sub == "completions" || name.ends_with(".1");
            if generated_kind && !fresh.contains_key(&rel) {
                problems.push(format!("packaging/{rel} is not generated any more"));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "man pages/completions are stale, run make man:\n{}",
        problems.join("\n")
    );
}

#[test]
fn man_pages_render_without_warnings() {
    if Command::new("man").arg("--version").output().is_err() {
        eprintln!("SKIPPED man_pages_render_without_warnings: no man(1) here");
        return;
    }
    for e in manifest(SITE_ZSH).iter().filter(|e| e.kind == "man") {
        let out = Command::new("man")
            .args(["--warnings", "-l", "-E", "UTF-8"])
            .arg(root().join(&e.source))
            .env("MANWIDTH", "80")
            .output()
            .unwrap();
        assert!(out.status.success(), "man -l {}", e.source);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.trim().is_empty(), "{}: {err}", e.source);
        // without a terminal, man marks bold as "X\bX": drop the overstrikes
        let raw = String::from_utf8_lossy(&out.stdout);
        let mut text = String::new();
        for ch in raw.chars() {
            if ch == '\u{8}' {
                text.pop();
            } else {
                text.push(ch);
            }
        }
        assert!(text.contains("NAME"), "{}: no NAME section", e.source);
    }
}

// ---------------------------------------------------------------------------------------
// make install = the manifest

/// Every path under `dir` (relative, with a leading /) → kind and mode/link target.
fn walk(dir: &Path) -> BTreeMap<String, String> {
    fn go(base: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        use std::os::unix::fs::PermissionsExt;
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let rel = format!("/{}", p.strip_prefix(base).unwrap().display());
            let md = fs::symlink_metadata(&p).unwrap();
            if md.file_type().is_symlink() {
                out.insert(
                    rel,
                    format!("link {}", fs::read_link(&p).unwrap().display()),
                );
            } else if md.is_dir() {
                out.insert(rel, format!("dir {:04o}", md.permissions().mode() & 0o7777));
                go(base, &p, out);
            } else {
                out.insert(
                    rel,
                    format!("file {:04o}", md.permissions().mode() & 0o7777),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    go(dir, dir, &mut out);
    out
}

/// What installing `m` must leave: the entries plus the parent directories.
fn expected_tree(m: &[Entry], gz: bool) -> BTreeMap<String, String> {
    let mut want = BTreeMap::new();
    for e in m {
        let mut p = Path::new(&e.path).parent();
        while let Some(d) = p {
            if d != Path::new("/") {
                want.entry(d.display().to_string())
                    .or_insert_with(|| "dir 0755".to_string());
            }
            p = d.parent();
        }
        let (path, what) = match e.kind.as_str() {
            "dir" => (e.path.clone(), format!("dir {}", e.mode)),
            "link" => (e.path.clone(), format!("link {}", e.source)),
            "man" if gz => (format!("{}.gz", e.path), format!("file {}", e.mode)),
            _ => (e.path.clone(), format!("file {}", e.mode)),
        };
        want.insert(path, what);
    }
    want
}

#[test]
fn make_install_installs_exactly_the_manifest() {
    let dest = tempfile::tempdir().unwrap();
    let out = Command::new("make")
        .current_dir(root())
        .arg("install")
        .arg(format!("DESTDIR={}", dest.path().display()))
        .arg(format!("BINDIR={}", bin_dir().display()))
        .output()
        .expect("make");
    assert!(
        out.status.success(),
        "make install: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let m = manifest(SITE_ZSH);
    assert_eq!(walk(dest.path()), expected_tree(&m, false));
    // contents
    for e in &m {
        let got = dest.path().join(e.path.trim_start_matches('/'));
        match e.kind.as_str() {
            "file" | "conf" | "man" => assert_eq!(
                fs::read(&got).unwrap(),
                fs::read(root().join(&e.source)).unwrap(),
                "{}",
                e.path
            ),
            "bin" => assert_eq!(
                fs::metadata(&got).unwrap().len(),
                fs::metadata(bin_dir().join(&e.source)).unwrap().len(),
                "{}",
                e.path
            ),
            "link" => {
                // the link resolves inside the tree to an installed binary
                let target = match e.source.strip_prefix('/') {
                    Some(abs) => dest.path().join(abs),
                    None => got.parent().unwrap().join(&e.source),
                };
                assert!(target.is_file(), "{} -> {} dangles", e.path, e.source);
            }
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------------------
// The .deb

#[test]
fn deb_contains_exactly_the_manifest() {
    for tool in ["dpkg-deb", "dpkg-shlibdeps"] {
        if Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map(|o| !o.status.success())
            .unwrap_or(true)
        {
            eprintln!("SKIPPED deb_contains_exactly_the_manifest: no {tool} (not Debian)");
            return;
        }
    }
    let out_dir = tempfile::tempdir().unwrap();
    let out = Command::new(root().join("packaging/debian/build-deb.sh"))
        .arg("--bindir")
        .arg(bin_dir())
        .arg("--out")
        .arg(out_dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "build-deb.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deb = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        deb.contains(&format!("virt-systemd_{}-1_", cargo_version())) && deb.ends_with(".deb"),
        "{deb}"
    );

    // contents: dpkg-deb -c, "./path" (links: "./path -> target")
    let c = Command::new("dpkg-deb")
        .args(["-c", &deb])
        .output()
        .unwrap();
    let mut got = BTreeMap::new();
    for l in String::from_utf8_lossy(&c.stdout).lines() {
        let cols: Vec<&str> = l.split_whitespace().collect();
        let (perm, owner) = (cols[0], cols[1]);
        assert_eq!(owner, "root/root", "{l}");
        let name = cols[5].trim_start_matches('.').trim_end_matches('/');
        if name.is_empty() {
            continue;
        }
        let mode = |p: &str| {
            let bits: u32 = p[1..]
                .chars()
                .enumerate()
                .map(|(i, ch)| if ch == '-' { 0 } else { 1 << (8 - i) })
                .sum();
            format!("{bits:04o}")
        };
        let what = match perm.as_bytes()[0] {
            b'd' => format!("dir {}", mode(perm)),
            b'l' => format!("link {}", cols[7]),
            _ => format!("file {}", mode(perm)),
        };
        got.insert(name.to_string(), what);
    }
    let m = manifest(DEBIAN_ZSH);
    assert_eq!(got, expected_tree(&m, true), "dpkg-deb -c {deb}");

    let field = |f: &str| {
        let o = Command::new("dpkg-deb")
            .args(["-f", &deb, f])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    let depends = field("Depends");
    assert!(depends.contains("libc6"), "Depends: {depends}");
    assert_eq!(field("Package"), "virt-systemd");

    let ctrl = tempfile::tempdir().unwrap();
    let o = Command::new("dpkg-deb")
        .args(["-e", &deb])
        .arg(ctrl.path())
        .output()
        .unwrap();
    assert!(o.status.success());
    let conffiles = fs::read_to_string(ctrl.path().join("conffiles")).unwrap();
    assert_eq!(
        conffiles.lines().map(str::to_string).collect::<Vec<_>>(),
        paths_of("conf", &m)
    );
    for s in ["postinst", "prerm", "postrm"] {
        assert!(ctrl.path().join(s).is_file(), "no {s} in the .deb");
    }
}

// ---------------------------------------------------------------------------------------
// RPM spec

/// Expand the macros the spec's %files uses (Fedora's values).
fn rpm_expand(s: &str) -> String {
    let macros = [
        ("%{_bindir}", "/usr/bin"),
        ("%{_libexecdir}", "/usr/libexec"),
        ("%{_sysconfdir}", "/etc"),
        ("%{_unitdir}", "/usr/lib/systemd/system"),
        ("%{_presetdir}", "/usr/lib/systemd/system-preset"),
        ("%{_userunitdir}", "/usr/lib/systemd/user"),
        ("%{_tmpfilesdir}", "/usr/lib/tmpfiles.d"),
        ("%{_mandir}", "/usr/share/man"),
        ("%{_docdir}", "/usr/share/doc"),
        ("%{_datadir}", "/usr/share"),
    ];
    let mut s = s.to_string();
    for (k, v) in macros {
        s = s.replace(k, v);
    }
    assert!(!s.contains('%'), "unexpanded macro in %files line: {s}");
    s
}

/// A %files glob (`*` only) matches a path.
fn glob_match(pat: &str, path: &str) -> bool {
    let parts: Vec<&str> = pat.split('*').collect();
    if parts.len() == 1 {
        return pat == path;
    }
    let mut rest = path;
    for (i, p) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(p) else {
                return false;
            };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(p) && !rest[..rest.len() - p.len()].contains('/');
        } else {
            let Some(at) = rest.find(p) else { return false };
            if rest[..at].contains('/') {
                return false;
            }
            rest = &rest[at + p.len()..];
        }
    }
    true
}

fn spec_section<'a>(spec: &'a str, name: &str) -> Vec<&'a str> {
    let mut lines = Vec::new();
    let mut inside = false;
    for l in spec.lines() {
        if l.starts_with('%')
            && [
                "%prep",
                "%build",
                "%install",
                "%check",
                "%post",
                "%preun",
                "%postun",
                "%files",
                "%changelog",
                "%description",
            ]
            .contains(&l.split_whitespace().next().unwrap_or(""))
        {
            inside = l.split_whitespace().next() == Some(name);
            continue;
        }
        if inside && !l.trim().is_empty() && !l.trim_start().starts_with('#') {
            lines.push(l);
        }
    }
    lines
}

#[test]
fn rpm_spec_files_are_the_manifest() {
    let spec = read("packaging/rpm/virt-systemd.spec");
    let version = spec
        .lines()
        .find_map(|l| l.strip_prefix("Version:"))
        .unwrap()
        .trim();
    assert_eq!(version, cargo_version(), "spec Version vs Cargo.toml");
    assert!(spec.contains("License:        LGPL-2.1-or-later"));
    assert!(
        spec_section(&spec, "%install")
            .iter()
            .any(|l| l.contains("make install DESTDIR=%{buildroot}")),
        "%install must run make install (packaging/install.sh)"
    );

    let m = manifest(SITE_ZSH);
    // (path, kind) per %files line; kind: dir, conf, file
    let mut lines = Vec::new();
    for l in spec_section(&spec, "%files") {
        let mut kind = "file";
        let mut words: Vec<&str> = l.split_whitespace().collect();
        while words.len() > 1 {
            match words[0] {
                "%dir" => kind = "dir",
                "%config(noreplace)" => kind = "conf",
                "%doc" | "%license" => {}
                other => panic!("unexpected %files attribute {other} in: {l}"),
            }
            words.remove(0);
        }
        lines.push((rpm_expand(words[0]), kind, l));
    }
    let mut covered: BTreeMap<String, &str> = BTreeMap::new();
    for (pat, kind, line) in &lines {
        let hits: Vec<&Entry> = m
            .iter()
            .filter(|e| {
                let p = if e.kind == "man" {
                    format!("{}.gz", e.path)
                } else {
                    e.path.clone()
                };
                glob_match(pat, &e.path) || glob_match(pat, &p)
            })
            .collect();
        assert!(
            !hits.is_empty(),
            "%files line matches nothing in the manifest: {line}"
        );
        for e in hits {
            let want = match e.kind.as_str() {
                "dir" => "dir",
                "conf" => "conf",
                _ => "file",
            };
            assert_eq!(*kind, want, "{line}: {} is a {} entry", e.path, e.kind);
            if let Some(prev) = covered.insert(e.path.clone(), line) {
                panic!("{} matched by two %files lines: {prev} / {line}", e.path);
            }
        }
    }
    let missing: Vec<&String> = m
        .iter()
        .map(|e| &e.path)
        .filter(|p| !covered.contains_key(*p))
        .collect();
    assert!(
        missing.is_empty(),
        "manifest paths without a %files line in the spec: {missing:?}"
    );
}

// ---------------------------------------------------------------------------------------
// PKGBUILD

#[test]
fn pkgbuild_installs_the_manifest() {
    let script = r#"set -e; source ./PKGBUILD
printf 'pkgver=%s\n' "$pkgver"
printf 'license=%s\n' "${license[*]}"
for b in "${backup[@]}"; do printf 'backup=%s\n' "$b"; done
printf 'install=%s\n' "$install"
declare -f package"#;
    let out = Command::new("bash")
        .args(["-c", script])
        .current_dir(root().join("packaging/arch"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let vals = |k: &str| -> Vec<String> {
        text.lines()
            .filter_map(|l| l.strip_prefix(&format!("{k}=")))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(vals("pkgver"), [cargo_version()]);
    assert_eq!(vals("license"), ["LGPL-2.1-or-later"]);
    let conf: Vec<String> = paths_of("conf", &manifest(SITE_ZSH))
        .into_iter()
        .map(|p| p.trim_start_matches('/').to_string())
        .collect();
    assert_eq!(vals("backup"), conf, "PKGBUILD backup=() vs conf lines");
    assert!(
        text.contains("make install DESTDIR=\"$pkgdir\""),
        "package() must run make install:\n{text}"
    );

    // run package() as makepkg would, on this build's binaries
    let srcdir = tempfile::tempdir().unwrap();
    let pkgdir = tempfile::tempdir().unwrap();
    let rel = srcdir.path().join("target/dist");
    fs::create_dir_all(&rel).unwrap();
    for e in manifest(SITE_ZSH).iter().filter(|e| e.kind == "bin") {
        fs::copy(bin_dir().join(&e.source), rel.join(&e.source)).unwrap();
    }
    let out = Command::new("bash")
        .args(["-c", "set -e; source ./PKGBUILD; startdir=$PWD; package"])
        .current_dir(root().join("packaging/arch"))
        .env("srcdir", srcdir.path())
        .env("pkgdir", pkgdir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "PKGBUILD package(): {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        walk(pkgdir.path()),
        expected_tree(&manifest(SITE_ZSH), false),
        "PKGBUILD package() installed another tree"
    );
    let install = &vals("install")[0];
    assert!(root().join("packaging/arch").join(install).is_file());
    let syntax = Command::new("bash")
        .arg("-n")
        .arg(root().join("packaging/arch").join(install))
        .status()
        .unwrap();
    assert!(syntax.success());
}

// ---------------------------------------------------------------------------------------
// Scripts, units, configuration

#[test]
fn maintainer_scripts_are_valid_sh() {
    for s in ["postinst", "prerm", "postrm"] {
        let p = root().join("packaging/debian").join(s);
        use std::os::unix::fs::PermissionsExt;
        assert!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o111 != 0,
            "{s} not executable"
        );
        let st = Command::new("sh").arg("-n").arg(&p).status().unwrap();
        assert!(st.success(), "sh -n {s}");
    }
    // every format takes the hook out on removal and reloads libvirt on install
    let link = virt_systemd::cli::hook_install::LINK_NAME;
    for (file, removal) in [
        ("packaging/debian/prerm", "remove"),
        ("packaging/rpm/virt-systemd.spec", "%preun"),
        ("packaging/arch/virt-systemd.install", "pre_remove"),
    ] {
        let t = read(file);
        assert!(
            t.contains(removal)
                && t.contains(link)
                && (t.contains("rm -f \"$link\"") || t.contains("rm -f \"$LINK\"")),
            "{file}: removal must delete the {link} link"
        );
        assert!(t.contains("reload"), "{file}: must reload libvirtd");
    }
    for file in [
        "packaging/debian/postinst",
        "packaging/rpm/virt-systemd.spec",
        "packaging/arch/virt-systemd.install",
    ] {
        let t = read(file);
        assert!(
            t.contains("VIRT_SYSTEMD_RESTART_LIBVIRTD")
                && t.contains("/etc/virt-systemd/restart-libvirtd"),
            "{file}: the restart opt-in"
        );
        assert!(
            t.contains("virt-systemd-notify.socket"),
            "{file}: enable the listener socket"
        );
    }
}

#[test]
fn units_and_paths_fit_the_code() {
    use clap::CommandFactory;
    let m = manifest(SITE_ZSH);
    // the hook: where hook-install and doctor look for it, linked where libvirt runs it
    let hook = virt_systemd::cli::hook_install::DEFAULT_HOOK;
    assert!(
        m.iter().any(|e| e.kind == "bin" && e.path == hook),
        "{hook}"
    );
    let link = m.iter().find(|e| e.kind == "link").unwrap();
    assert_eq!(
        link.path,
        format!(
            "{}/qemu.d/{}",
            virt_systemd::cli::hook_install::DEFAULT_HOOKS_DIR,
            virt_systemd::cli::hook_install::LINK_NAME
        )
    );
    let resolved = Path::new(&link.path).parent().unwrap().join(&link.source);
    let norm: PathBuf = resolved.components().fold(PathBuf::new(), |mut p, c| {
        match c {
            std::path::Component::ParentDir => {
                p.pop();
            }
            c => p.push(c),
        }
        p
    });
    assert_eq!(norm, Path::new(hook));

    // the socket listens where rewrite points guests
    let socket = read("packaging/systemd/virt-systemd-notify.socket");
    assert!(
        socket.contains(&format!(
            "ListenStream=vsock::{}\n",
            virt_systemd::DEFAULT_NOTIFY_PORT
        )),
        "{socket}"
    );
    // the services run commands the CLI has
    for unit in [
        "virt-systemd-notify.service",
        "virt-systemd-control.service",
    ] {
        let service = read(&format!("packaging/systemd/{unit}"));
        let exec = service
            .lines()
            .find_map(|l| l.strip_prefix("ExecStart="))
            .unwrap();
        let argv: Vec<&str> = exec.split_whitespace().collect();
        assert!(m.iter().any(|e| e.kind == "bin" && e.path == argv[0]));
        let cli = virt_systemd::cli::Cli::command();
        assert!(
            cli.find_subcommand(argv[1]).is_some(),
            "{unit} runs `{exec}`, but the CLI has no `{}` command",
            argv[1]
        );
    }
    // the control service signals readiness only after its first reconciliation
    assert!(read("packaging/systemd/virt-systemd-control.service").contains("Type=notify\n"));
    // tmpfiles creates the state dir the config defaults to
    let tmpfiles = read("packaging/tmpfiles.d/virt-systemd.conf");
    let state = virt_systemd::config::Config::default().hook.state_dir;
    assert!(tmpfiles.contains(&format!("d {} 0755 root root", state.display())));
    // the preset enables the socket
    let preset = read("packaging/systemd/80-virt-systemd.preset");
    assert!(preset.contains("enable virt-systemd-notify.socket"));
    assert!(preset.contains("enable virt-systemd-control.service"));
}

/// `(section, key)` of every field of the configuration structs in crates/core/src/config.rs.
fn config_keys() -> Vec<(String, String)> {
    let src = read("crates/core/src/config.rs");
    let mut structs: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut cur: Option<String> = None;
    for l in src.lines() {
        let t = l.trim();
        if let Some(rest) = t.strip_prefix("pub struct ") {
            cur = rest.strip_suffix(" {").map(|n| n.trim().to_string());
            if let Some(c) = &cur {
                structs.insert(c.clone(), vec![]);
            }
            continue;
        }
        if t == "}" {
            cur = None;
            continue;
        }
        if let (Some(c), Some(field)) = (&cur, t.strip_prefix("pub ")) {
            if let Some((name, ty)) = field.split_once(':') {
                structs
                    .get_mut(c)
                    .unwrap()
                    .push((name.trim().into(), ty.trim().trim_end_matches(',').into()));
            }
        }
    }
    let top = structs
        .get("Config")
        .expect("struct Config in crates/core/src/config.rs");
    let mut keys = Vec::new();
    for (section, ty) in top {
        keys.push((section.clone(), String::new()));
        let fields = structs
            .get(ty)
            .unwrap_or_else(|| panic!("struct {ty} not found"));
        for (k, _) in fields {
            keys.push((section.clone(), k.clone()));
        }
    }
    assert!(keys.len() > 10, "parsed too few keys: {keys:?}");
    keys
}

#[test]
fn every_config_key_is_documented_and_in_the_default_file() {
    let page = read("packaging/man/virt-systemd.toml.5");
    let toml_file = read("packaging/config.toml");
    let word = |hay: &str, w: &str| {
        hay.match_indices(w).any(|(i, _)| {
            let before = hay[..i].chars().last();
            let after = hay[i + w.len()..].chars().next();
            let is_word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
            !is_word(before) && !is_word(after)
        })
    };
    let mut missing = Vec::new();
    for (section, key) in config_keys() {
        if key.is_empty() {
            let s = format!("[{section}]");
            if !page.contains(&s) {
                missing.push(format!("virt-systemd.toml.5: {s}"));
            }
            if !toml_file.contains(&s) {
                missing.push(format!("config.toml: {s}"));
            }
            continue;
        }
        if !word(&page, &key) {
            missing.push(format!("virt-systemd.toml.5: {section}.{key}"));
        }
        let in_file = toml_file.contains(&format!("[{section}.{key}]"))
            || toml_file.lines().any(|l| {
                l.trim_start_matches(['#', ' '])
                    .starts_with(&format!("{key} ="))
            });
        if !in_file {
            missing.push(format!("packaging/config.toml: {section}.{key}"));
        }
    }
    assert!(
        missing.is_empty(),
        "configuration keys of crates/core/src/config.rs not documented:\n{}",
        missing.join("\n")
    );
}

#[test]
fn default_config_file_states_the_builtin_defaults() {
    use virt_systemd::config::Config;
    let text = read("packaging/config.toml");
    // as shipped (everything commented out) it parses
    assert_eq!(
        Config::parse(&text, "packaging/config.toml").unwrap(),
        Config::default()
    );
    // "#key = value" lines are the defaults: uncommented they change nothing
    let uncommented: String = text
        .lines()
        .map(|l| match l.strip_prefix('#') {
            Some(r) if !r.starts_with(' ') && r.contains(" = ") => r.to_string(),
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    let n = text
        .lines()
        .filter(|l| l.starts_with('#') && !l.starts_with("# ") && l.contains(" = "))
        .count();
    assert!(n >= 10, "only {n} default lines");
    assert_eq!(
        Config::parse(&uncommented, "uncommented").unwrap(),
        Config::default(),
        "a #key = value line in packaging/config.toml is not the built-in default"
    );
}

#[test]
fn versions_agree() {
    let v = cargo_version();
    for (file, needle) in [
        (
            "packaging/rpm/virt-systemd.spec",
            format!("Version:        {v}"),
        ),
        ("packaging/arch/PKGBUILD", format!("pkgver={v}")),
    ] {
        assert!(read(file).contains(&needle), "{file}: {needle}");
    }
    assert!(read("LICENSE").contains("GNU LESSER GENERAL PUBLIC LICENSE"));
    assert!(read("LICENSE").contains("Version 2.1"));
}

// ---------------------------------------------------------------------------------------
// The RPM itself, where rpmbuild is installed (Debian: apt-get install rpm)

#[test]
fn rpm_contains_exactly_the_manifest() {
    if Command::new("rpmbuild").arg("--version").output().is_err() {
        eprintln!(
            "SKIPPED rpm_contains_exactly_the_manifest: no rpmbuild (Debian: apt-get install rpm)"
        );
        return;
    }
    // stripped copies keep the payload small
    let bins = tempfile::tempdir().unwrap();
    let m = manifest(SITE_ZSH);
    for e in m.iter().filter(|e| e.kind == "bin") {
        let to = bins.path().join(&e.source);
        fs::copy(bin_dir().join(&e.source), &to).unwrap();
        assert!(Command::new("strip").arg(&to).status().unwrap().success());
    }
    let out_dir = tempfile::tempdir().unwrap();
    let out = Command::new(root().join("packaging/rpm/build-rpm.sh"))
        .arg("--bindir")
        .arg(bins.path())
        .arg("--out")
        .arg(out_dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "build-rpm.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rpm = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let q = |args: &[&str]| -> Vec<String> {
        let o = Command::new("rpm").args(args).arg(&rpm).output().unwrap();
        assert!(o.status.success(), "rpm {args:?}");
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| !l.starts_with("/usr/lib/.build-id"))
            .map(str::to_string)
            .collect()
    };
    // man pages come out compressed where rpmbuild's brp-compress runs, plain elsewhere
    let mut listed: Vec<String> = q(&["-qlp"])
        .into_iter()
        .map(|p| p.trim_end_matches(".gz").to_string())
        .collect();
    listed.sort();
    let mut want: Vec<String> = m.iter().map(|e| e.path.clone()).collect();
    want.sort();
    assert_eq!(listed, want, "rpm -qlp {rpm}");
    assert_eq!(q(&["-qcp"]), paths_of("conf", &m), "rpm -qcp");
    let scripts = q(&["-qp", "--scripts"]).join("\n");
    for needle in [
        "preuninstall",
        "50-virt-systemd",
        "virt-systemd-notify.socket",
    ] {
        assert!(scripts.contains(needle), "scriptlets lack {needle}");
    }
}
