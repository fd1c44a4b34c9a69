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

/// The fuzz target's laws on mutations of its seed corpus, the way libFuzzer mutates (cut,
/// duplicate, insert a dictionary token, flip a byte), from a fixed proptest seed per run
/// configuration; failures shrink to a small edit list. This is no replacement for
/// coverage-guided fuzzing (`fuzz/smoke.sh`, opt-in), but the laws are checked on every test
/// run on inputs nobody wrote by hand.
mod mutated {
    use proptest::prelude::*;
    use std::path::Path;

    fn fuzz_dir() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
    }

    /// Read once for all cases.
    fn seeds() -> &'static [Vec<u8>] {
        static SEEDS: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
        SEEDS.get_or_init(read_seeds)
    }

    fn read_seeds() -> Vec<Vec<u8>> {
        let mut v: Vec<(std::path::PathBuf, Vec<u8>)> = ["seeds/rewrite", "regressions/rewrite"]
            .iter()
            .flat_map(|d| std::fs::read_dir(fuzz_dir().join(d)).unwrap())
            .map(|e| e.unwrap().path())
            .map(|p| (p.clone(), std::fs::read(p).unwrap()))
            .collect();
        v.sort();
        v.into_iter().map(|(_, b)| b).collect()
    }

    fn dictionary() -> &'static [Vec<u8>] {
        static DICT: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
        DICT.get_or_init(read_dictionary)
    }

    /// libFuzzer's dictionary format: one `"token"` a line, `\\`, `\"` and `\xNN` escapes.
    fn read_dictionary() -> Vec<Vec<u8>> {
        let text = std::fs::read_to_string(fuzz_dir().join("rewrite.dict")).unwrap();
        text.lines()
            .filter_map(|l| Some(l.trim().strip_prefix('"')?.strip_suffix('"')?.as_bytes()))
            .map(|t| {
                let mut out = Vec::new();
                let mut i = 0;
                while i < t.len() {
                    match (t[i], t.get(i + 1)) {
                        (b'\\', Some(b'x')) => {
                            let hex = std::str::from_utf8(&t[i + 2..i + 4]).unwrap();
                            out.push(u8::from_str_radix(hex, 16).unwrap());
                            i += 4;
                        }
                        (b'\\', Some(&c)) => {
                            out.push(c);
                            i += 2;
                        }
                        (c, _) => {
                            out.push(c);
                            i += 1;
                        }
                    }
                }
                out
            })
            .collect()
    }

    /// An edit at a markup boundary (before a `<`), where most results stay well-formed
    /// and reach the rewriter, or (`Flip`) anywhere.
    #[derive(Debug, Clone)]
    enum Edit {
        /// Remove from one boundary to a later one (`n` boundaries on).
        Cut(usize, usize),
        /// Repeat the text between two boundaries right after itself.
        Duplicate(usize, usize),
        /// A dictionary token at a boundary.
        Insert(usize, usize),
        Flip(usize, u8),
    }

    fn edit() -> impl Strategy<Value = Edit> {
        prop_oneof![
            3 => (any::<usize>(), 1usize..4).prop_map(|(p, n)| Edit::Cut(p, n)),
            3 => (any::<usize>(), 1usize..4).prop_map(|(p, n)| Edit::Duplicate(p, n)),
            6 => (any::<usize>(), any::<usize>()).prop_map(|(p, t)| Edit::Insert(p, t)),
            1 => (any::<usize>(), any::<u8>()).prop_map(|(p, b)| Edit::Flip(p, b)),
        ]
    }

    fn apply(mut b: Vec<u8>, edits: &[Edit], dict: &[Vec<u8>]) -> Vec<u8> {
        for e in edits {
            // Offsets of every `<`, and the end.
            let mut marks: Vec<usize> = (0..b.len()).filter(|&i| b[i] == b'<').collect();
            marks.push(b.len());
            let mark = |p: usize| marks[p % marks.len()];
            let span = |p: usize, n: usize| {
                let i = p % marks.len();
                (marks[i], marks[(i + n).min(marks.len() - 1)])
            };
            match *e {
                Edit::Cut(p, n) => {
                    let (s, t) = span(p, n);
                    b.drain(s..t);
                }
                Edit::Duplicate(p, n) => {
                    let (s, t) = span(p, n);
                    let piece = b[s..t].to_vec();
                    b.splice(t..t, piece);
                }
                Edit::Insert(p, t) => {
                    let s = mark(p);
                    b.splice(s..s, dict[t % dict.len()].iter().copied());
                }
                Edit::Flip(p, x) if !b.is_empty() => {
                    let s = p % b.len();
                    b[s] = x;
                }
                Edit::Flip(..) => {}
            }
        }
        b
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 4000,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]
        #[test]
        fn laws_hold_on_mutated_seeds(
            seed in any::<usize>(),
            edits in proptest::collection::vec(edit(), 1..4),
        ) {
            let seeds = seeds();
            let input = apply(seeds[seed % seeds.len()].clone(), &edits, dictionary());
            super::laws::check_all(&input);
        }
    }
}
