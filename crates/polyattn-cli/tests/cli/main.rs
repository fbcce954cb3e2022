//! End-to-end tests of the `polyattn` binary on temporary files; [`hostile`] holds the inputs
//! that once crashed, hung or exhausted the machine.

mod decode;
mod distributed;
mod hostile;

use poly_core::{AttentionConfig, Mask, Normalization, Tensor, reference_attention};
use poly_data::{TensorData, read_npy, write_npy, write_npy_fortran, write_safetensors_f32};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::path::{Path, PathBuf};
use std::process::Command;

fn polyattn(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_polyattn"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn random(seed: u64, len: usize) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Self {
        Files {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn npy(&self, name: &str, shape: &[usize], data: &[f32]) -> String {
        let path = self.path(name);
        write_npy(&path, shape, data).unwrap();
        path.to_str().unwrap().to_owned()
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn expect_error(args: &[&str], needle: &str) {
    let (code, stdout, stderr) = polyattn(args);
    assert_eq!(code, 2, "{args:?}: stderr {stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(stderr.contains(needle), "expected {needle:?} in {stderr}");
    assert!(!stderr.contains("panicked") && !stderr.contains("backtrace"));
    assert!(stdout.is_empty());
}

/// The f32 data of an output file, after checking its shape.
fn read_f32(path: &Path, shape: &[usize]) -> Vec<f32> {
    let result = read_npy(path).unwrap();
    assert_eq!(result.shape, shape);
    let TensorData::F32(got) = result.data else {
        panic!("expected f32 output")
    };
    got
}

/// The library reference on `[h, n, d]` inputs, flattened.
fn expected(q: &[f32], k: &[f32], v: &[f32], dims: [usize; 4], cfg: &AttentionConfig) -> Vec<f64> {
    let [h, n, d, dv] = dims;
    let q = Tensor::from_vec([1, h, n, d], q.to_vec()).unwrap();
    let k = Tensor::from_vec([1, h, n, d], k.to_vec()).unwrap();
    let v = Tensor::from_vec([1, h, n, dv], v.to_vec()).unwrap();
    reference_attention(q.view(), k.view(), v.view(), cfg)
        .unwrap()
        .into_vec()
}

#[test]
fn attend_poly_causal_on_npy_files() {
    let f = Files::new();
    let (h, n, d, dv) = (2, 70, 8, 5);
    let (q, k, v) = (
        random(1, h * n * d),
        random(2, h * n * d),
        random(3, h * n * dv),
    );
    let args_q = f.npy("q.npy", &[h, n, d], &q);
    let args_k = f.npy("k.npy", &[h, n, d], &k);
    let args_v = f.npy("v.npy", &[h, n, dv], &v);
    let out = f.path("o.npy");
    let (code, _, stderr) = polyattn(&[
        "attend",
        "--q",
        &args_q,
        "--k",
        &args_k,
        "--v",
        &args_v,
        "--out",
        s(&out),
        "--causal",
        "--degree",
        "6",
        "--norm",
        "one-plus-sum",
        "--norm-bias",
        "0.5",
        "--threads",
        "2",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let got = read_f32(&out, &[h, n, dv]);
    let cfg = AttentionConfig::polynomial(6)
        .with_mask(Mask::Causal)
        .with_normalization(Normalization::OnePlusSum(0.5));
    let want = expected(&q, &k, &v, [h, n, d, dv], &cfg);
    let scale = want.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    for (g, w) in got.iter().zip(&want) {
        assert!((*g as f64 - w).abs() <= 1e-4 * scale);
    }
}

#[test]
fn grouped_key_value_heads_are_inferred_from_the_shapes() {
    let f = Files::new();
    let (h, h_kv, n, d, dv) = (4, 2, 30, 8, 5);
    let (q, k, v) = (
        random(4, h * n * d),
        random(5, h_kv * n * d),
        random(6, h_kv * n * dv),
    );
    // The same k/v heads, repeated for each query head of their group.
    let repeat = |x: &[f32], width: usize| -> Vec<f32> {
        x.chunks_exact(n * width)
            .flat_map(|head| head.iter().chain(head).copied().collect::<Vec<_>>())
            .collect()
    };
    let (k_rep, v_rep) = (repeat(&k, d), repeat(&v, dv));
    let args_q = f.npy("q.npy", &[h, n, d], &q);
    let run = |k: &[f32], v: &[f32], heads: usize, tag: &str| {
        let args_k = f.npy(&format!("k{tag}.npy"), &[heads, n, d], k);
        let args_v = f.npy(&format!("v{tag}.npy"), &[heads, n, dv], v);
        let out = f.path(&format!("o{tag}.npy"));
        let (code, _, stderr) = polyattn(&[
            "attend",
            "--q",
            &args_q,
            "--k",
            &args_k,
            "--v",
            &args_v,
            "--out",
            s(&out),
            "--causal",
            "--kernel",
            "softmax",
        ]);
        assert_eq!(code, 0, "{stderr}");
        read_f32(&out, &[h, n, dv])
    };
    let grouped = run(&k, &v, h_kv, "g");
    let repeated = run(&k_rep, &v_rep, h, "r");
    assert_eq!(grouped, repeated);
    let k3 = f.npy("k3.npy", &[3, n, d], &random(7, 3 * n * d));
    let v3 = f.npy("v3.npy", &[3, n, dv], &random(8, 3 * n * dv));
    expect_error(
        &["attend", "--q", &args_q, "--k", &k3, "--v", &v3],
        "3 heads do not divide q's 4 heads",
    );
}

#[test]
fn window_restricts_each_query_to_a_band_of_keys() {
    let f = Files::new();
    let (h, n, d, dv) = (2, 50, 4, 3);
    let (q, k, v) = (
        random(9, h * n * d),
        random(10, h * n * d),
        random(11, h * n * dv),
    );
    let (aq, ak, av) = (
        f.npy("q.npy", &[h, n, d], &q),
        f.npy("k.npy", &[h, n, d], &k),
        f.npy("v.npy", &[h, n, dv], &v),
    );
    let out = f.path("o.npy");
    let (code, _, stderr) = polyattn(&[
        "attend",
        "--q",
        &aq,
        "--k",
        &ak,
        "--v",
        &av,
        "--out",
        s(&out),
        "--kernel",
        "softmax",
        "--causal",
        "--window",
        "7",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let got = read_f32(&out, &[h, n, dv]);
    let cfg = AttentionConfig::softmax()
        .with_mask(Mask::Causal)
        .with_window(7);
    let want = expected(&q, &k, &v, [h, n, d, dv], &cfg);
    for (g, w) in got.iter().zip(&want) {
        assert!((*g as f64 - w).abs() <= 1e-5, "{g} vs {w}");
    }
    // Without the window the result differs (the band is real).
    let unwindowed = expected(
        &q,
        &k,
        &v,
        [h, n, d, dv],
        &cfg.with_mask(Mask::Causal).with_window(n),
    );
    assert!(
        got.iter()
            .zip(&unwindowed)
            .any(|(g, w)| (*g as f64 - w).abs() > 1e-3)
    );
    expect_error(
        &[
            "attend", "--q", &aq, "--k", &ak, "--v", &av, "--kernel", "exact2", "--window", "3",
        ],
        "--window does not apply to the sketched kernels",
    );
    expect_error(
        &[
            "attend", "--q", &aq, "--k", &ak, "--v", &av, "--window", "0",
        ],
        "window",
    );
}

#[test]
fn seq_lens_packs_sequences_that_attend_only_within_themselves() {
    let f = Files::new();
    let (n, d, dv) = (30, 4, 3);
    let (q, k, v) = (random(12, n * d), random(13, n * d), random(14, n * dv));
    let (aq, ak, av) = (
        f.npy("q.npy", &[n, d], &q),
        f.npy("k.npy", &[n, d], &k),
        f.npy("v.npy", &[n, dv], &v),
    );
    let out = f.path("o.npy");
    let (code, _, stderr) = polyattn(&[
        "attend",
        "--q",
        &aq,
        "--k",
        &ak,
        "--v",
        &av,
        "--out",
        s(&out),
        "--causal",
        "--seq-lens",
        "10,1,19",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let got = read_f32(&out, &[n, dv]);
    let cfg = AttentionConfig::polynomial(4).with_mask(Mask::Causal);
    let mut start = 0;
    for len in [10, 1, 19] {
        let rows = start..start + len;
        let want = expected(
            &q[rows.start * d..rows.end * d],
            &k[rows.start * d..rows.end * d],
            &v[rows.start * dv..rows.end * dv],
            [1, len, d, dv],
            &cfg,
        );
        for (g, w) in got[rows.start * dv..rows.end * dv].iter().zip(&want) {
            assert!(
                (*g as f64 - w).abs() <= 1e-4 * w.abs().max(1.0),
                "{g} vs {w}"
            );
        }
        start += len;
    }
    let base = ["attend", "--q", &aq, "--k", &ak, "--v", &av];
    let with = |extra: &[&'static str]| [&base[..], extra].concat();
    expect_error(&with(&["--seq-lens", "10,10"]), "sequence lengths");
    expect_error(&with(&["--seq-lens", "30,0"]), "length 0 at index 1");
    // Sketched: the packed run equals the sequences run one by one.
    let packed = f.path("p.npy");
    let sketched = ["--kernel", "polysketch", "--causal", "--block", "4"];
    let mut args = vec![
        "attend",
        "--q",
        &aq,
        "--k",
        &ak,
        "--v",
        &av,
        "--out",
        s(&packed),
    ];
    args.extend(sketched);
    args.extend(["--seq-lens", "10,20"]);
    let (code, _, stderr) = polyattn(&args);
    assert_eq!(code, 0, "{stderr}");
    let got = read_f32(&packed, &[n, dv]);
    let first = f.path("first.npy");
    let (fq, fk, fv) = (
        f.npy("fq.npy", &[10, d], &q[..10 * d]),
        f.npy("fk.npy", &[10, d], &k[..10 * d]),
        f.npy("fv.npy", &[10, dv], &v[..10 * dv]),
    );
    let mut args = vec![
        "attend",
        "--q",
        &fq,
        "--k",
        &fk,
        "--v",
        &fv,
        "--out",
        s(&first),
    ];
    args.extend(sketched);
    let (code, _, stderr) = polyattn(&args);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(read_f32(&first, &[10, dv]), got[..10 * dv]);
}

#[test]
fn attend_softmax_from_safetensors_in_f64_with_fortran_order() {
    let f = Files::new();
    let (n, d) = (33, 4);
    let (q, k, v) = (random(4, n * d), random(5, n * d), random(6, n * d));
    let input = f.path("qkv.safetensors");
    write_safetensors_f32(
        &input,
        &[
            ("q", vec![n, d], &q),
            ("k", vec![n, d], &k),
            ("v", vec![n, d], &v),
        ],
    )
    .unwrap();
    let out = f.path("o.npy");
    let (code, _, stderr) = polyattn(&[
        "attend",
        "--input",
        s(&input),
        "--kernel",
        "softmax",
        "--dtype",
        "f64",
        "--scale",
        "0.7",
        "--layernorm",
        "--out",
        s(&out),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let TensorData::F64(from_safetensors) = read_npy(&out).unwrap().data else {
        panic!("f64")
    };
    let cfg = AttentionConfig::softmax()
        .with_scale(0.7)
        .with_layernorm(true);
    let want = expected(&q, &k, &v, [1, n, d, d], &cfg);
    for (g, w) in from_safetensors.iter().zip(&want) {
        assert!((g - w).abs() < 1e-12);
    }
    // The same inputs as Fortran-order .npy files give the same answer.
    let paths: Vec<String> = [("q", &q), ("k", &k), ("v", &v)]
        .iter()
        .map(|(name, data)| {
            let p = f.path(&format!("{name}_f.npy"));
            write_npy_fortran(&p, &[n, d], data).unwrap();
            s(&p).to_owned()
        })
        .collect();
    let out2 = f.path("o2.npy");
    let (code, _, _) = polyattn(&[
        "attend",
        "--q",
        &paths[0],
        "--k",
        &paths[1],
        "--v",
        &paths[2],
        "--kernel",
        "softmax",
        "--dtype",
        "f64",
        "--scale",
        "0.7",
        "--layernorm",
        "--out",
        s(&out2),
    ]);
    assert_eq!(code, 0);
    assert_eq!(
        read_npy(&out2).unwrap().data,
        TensorData::F64(from_safetensors)
    );
}

#[test]
fn repeat_prints_one_json_timing_line() {
    let f = Files::new();
    let x = random(7, 2 * 2 * 40 * 8);
    let p = f.npy("x.npy", &[2, 2, 40, 8], &x);
    let (code, stdout, stderr) = polyattn(&[
        "attend",
        "--q",
        &p,
        "--k",
        &p,
        "--v",
        &p,
        "--repeat",
        "3",
        "--threads",
        "1",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.lines().count(), 1);
    let record: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(record["kernel"], "poly");
    assert_eq!(record["causal"], false);
    assert_eq!(record["threads"], 1);
    assert_eq!(record["shape"], serde_json::json!([2, 2, 40, 40, 8, 8]));
    let gflop = record["gflop"].as_f64().unwrap();
    assert_eq!(gflop, 4.0 * 40.0 * 40.0 * 8.0 * 4.0 / 1e9);
    let (median, min) = (
        record["seconds_median"].as_f64().unwrap(),
        record["seconds_min"].as_f64().unwrap(),
    );
    assert!(min > 0.0 && min <= median);
    let each: Vec<f64> = record["seconds_each"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_f64().unwrap())
        .collect();
    assert_eq!(each.len(), 3);
    assert_eq!(each.iter().copied().fold(f64::INFINITY, f64::min), min);
    let mut sorted = each.clone();
    sorted.sort_by(f64::total_cmp);
    assert_eq!(sorted[1], median);
    assert!((record["gflops"].as_f64().unwrap() - gflop / median).abs() < 1e-9 * gflop / median);
}

#[test]
fn bad_inputs_exit_2_with_one_error_line() {
    let f = Files::new();
    let good = f.npy("good.npy", &[10, 4], &random(8, 40));
    let other_d = f.npy("d3.npy", &[10, 3], &random(9, 30));
    let mut with_nan = random(10, 40);
    with_nan[13] = f32::NAN;
    let nan = f.npy("nan.npy", &[10, 4], &with_nan);
    let garbage = f.path("garbage.npy");
    std::fs::write(&garbage, b"\x93NUMPY garbage").unwrap();
    let ints = f.path("ints.npy");
    write_npy(&ints, &[10, 4], &[1i32; 40]).unwrap();
    let truncated = f.path("truncated.npy");
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() - 9]).unwrap();
    let missing = f.path("missing.npy");
    let qkv = |q: &str, k: &str, v: &str| {
        vec!["attend", "--q", q, "--k", k, "--v", v]
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>()
    };
    let with = |mut base: Vec<String>, extra: &[&str]| {
        base.extend(extra.iter().map(|s| s.to_string()));
        base
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (qkv(s(&missing), &good, &good), "missing.npy"),
        (qkv(s(&garbage), &good, &good), "not a valid .npy"),
        (qkv(&good, s(&truncated), &good), "truncated"),
        (qkv(&good, &good, s(&ints)), "not supported"),
        (
            qkv(&good, &other_d, &good),
            "tensor k: axis dim has length 3, expected 4",
        ),
        (
            qkv(&good, &good, &nan),
            "tensor v: non-finite value NaN at index [0, 0, 3, 1]",
        ),
        (
            with(
                qkv(&good, &good, &good),
                &["--kernel", "favor", "--degree", "2"],
            ),
            "--degree does not apply to favor, which approximates softmax",
        ),
        (
            with(
                qkv(&good, &good, &good),
                &["--kernel", "favor", "--norm", "one-plus-sum"],
            ),
            "Sum",
        ),
        (with(qkv(&good, &good, &good), &["--degree", "0"]), "degree"),
        (
            with(qkv(&good, &good, &good), &["--threads", "0"]),
            "--threads",
        ),
        (
            with(qkv(&good, &good, &good), &["--sketch-dim", "16"]),
            "--sketch-dim does not apply to the exact kernels",
        ),
        (
            with(
                qkv(&good, &good, &good),
                &["--norm", "one-plus-sum", "--norm-bias", "-1"],
            ),
            "norm-bias",
        ),
        (
            with(
                qkv(&good, &good, &good),
                &["--out", "/nonexistent/dir/o.npy"],
            ),
            "/nonexistent/dir/o.npy",
        ),
        (vec!["attend".into()], "--q Q.npy --k K.npy --v V.npy"),
        (
            vec!["attend".into(), "--input".into(), good.clone()],
            "not a valid .safetensors",
        ),
    ];
    for (args, needle) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        expect_error(&args, needle);
    }
    // An odd degree whose normalizer cancels names the row.
    let q = f.npy("q1.npy", &[1, 1], &[1.0]);
    let k = f.npy("k1.npy", &[2, 1], &[1.0, -1.0]);
    let v = f.npy("v1.npy", &[2, 1], &[1.0, 2.0]);
    expect_error(
        &["attend", "--q", &q, "--k", &k, "--v", &v, "--degree", "3"],
        "batch 0, head 0, row 0",
    );
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["attend", "--kernel", "nonsense"][..],
        &["attend", "--bogus"],
        &["frobnicate"],
    ] {
        let (code, _, stderr) = polyattn(args);
        assert_eq!(code, 2, "{args:?}");
        assert!(stderr.starts_with("error: "), "{stderr}");
        assert!(
            stderr.contains("For more information, try '--help'"),
            "clap's full message: {stderr}"
        );
    }
    // clap's whole message reaches the user: valid values, the missing arguments' names.
    let (_, _, stderr) = polyattn(&["attend", "--kernel", "nonsense"]);
    assert!(
        stderr.contains("possible values") && stderr.contains("polysketch"),
        "{stderr}"
    );
    let (_, _, stderr) = polyattn(&["attend", "--q", "q.npy"]);
    assert!(
        stderr.contains("--k <K.npy>") && stderr.contains("--v <V.npy>"),
        "{stderr}"
    );
    let (_, _, stderr) = polyattn(&["attend", "--causl"]);
    assert!(stderr.contains("--causal"), "a did-you-mean: {stderr}");
    let (code, stdout, _) = polyattn(&["attend", "--help"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("--sketch-dim"));
}

#[test]
fn reproduce_quick_writes_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("repro");
    let (code, stdout, stderr) = polyattn(&["reproduce", "--quick", "--out", s(&out)]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("poly16 1.00"), "{stdout}");
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().collect();
    assert!(rows[0].starts_with("dataset,n,d,b,kernel"));
    // 3 sizes × 10 kernels closed form + 7 engine R-ratio cells + 5 R-self cells.
    assert_eq!(rows.len(), 1 + 30 + 7 + 5);
    let low = rows
        .iter()
        .find(|r| r.starts_with("R-ratio,4096,16,16.0,poly2,2,closed-form"))
        .unwrap();
    let best: f64 = low.split(',').nth(9).unwrap().parse().unwrap();
    assert!(best <= 0.6, "{low}");
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("## Predicted vs measured"));
    for plot in [
        "accuracy_vs_degree.svg",
        "planted_weight_vs_degree.svg",
        "histograms.svg",
        "heatmaps.svg",
    ] {
        let svg = std::fs::read_to_string(out.join(plot)).unwrap();
        assert!(svg.starts_with("<svg") && svg.len() > 5000, "{plot}");
        assert!(report.contains(plot));
    }
    let (code, _, stderr) = polyattn(&["reproduce", "--quick", "--out", "/proc/nope"]);
    assert_eq!(code, 2);
    assert!(
        stderr.starts_with("error: ") && stderr.contains("/proc/nope"),
        "{stderr}"
    );
}

#[test]
fn sketched_attention_and_features_agree() {
    let f = Files::new();
    let (n, d) = (50, 4);
    let x = random(30, n * d);
    let xp = f.npy("x.npy", &[n, d], &x);
    // exact2 with one-plus-sum is exact degree-2 polynomial attention.
    let out = f.path("exact2.npy");
    let (code, _, stderr) = polyattn(&[
        "attend",
        "--q",
        &xp,
        "--k",
        &xp,
        "--v",
        &xp,
        "--kernel",
        "exact2",
        "--causal",
        "--block",
        "7",
        "--norm",
        "one-plus-sum",
        "--out",
        s(&out),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let TensorData::F32(got) = read_npy(&out).unwrap().data else {
        panic!("f32")
    };
    let cfg = AttentionConfig::polynomial(2)
        .with_mask(Mask::Causal)
        .with_normalization(Normalization::OnePlusSum(1.0));
    let want = expected(&x, &x, &x, [1, n, d, d], &cfg);
    for (g, w) in got.iter().zip(&want) {
        assert!((*g as f64 - w).abs() < 1e-4, "{g} vs {w}");
    }
    // The mixed variant with one block covering the sequence is exact degree-4 attention.
    let out = f.path("mixed.npy");
    let (code, _, stderr) = polyattn(&[
        "attend",
        "--q",
        &xp,
        "--k",
        &xp,
        "--v",
        &xp,
        "--kernel",
        "polysketch",
        "--causal",
        "--local-exact",
        "--block",
        "64",
        "--norm",
        "one-plus-sum",
        "--out",
        s(&out),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let TensorData::F32(got) = read_npy(&out).unwrap().data else {
        panic!("f32")
    };
    let cfg = AttentionConfig::polynomial(4)
        .with_mask(Mask::Causal)
        .with_normalization(Normalization::OnePlusSum(1.0));
    let want = expected(&x, &x, &x, [1, n, d, d], &cfg);
    for (g, w) in got.iter().zip(&want) {
        assert!(
            (*g as f64 - w).abs() < 1e-4 * w.abs().max(1.0),
            "{g} vs {w}"
        );
    }
    // `features` writes the φ that `attend --kernel K` uses for the same seed, for every map.
    for (kernel, degree, dim, norm, bias) in [
        ("polysketch", Some("4"), "8", "one-plus-sum", 1.0),
        ("tensorsketch", Some("3"), "16", "one-plus-sum", 1.0),
        ("maclaurin", Some("2"), "16", "one-plus-sum", 1.0),
        ("favor", None, "16", "sum", 0.0),
    ] {
        let mut flags = vec!["--sketch-dim", dim, "--seed", "3", "--dtype", "f64"];
        if let Some(degree) = degree {
            flags.extend(["--degree", degree]);
        }
        let feats = f.path(&format!("phi_{kernel}.npy"));
        let mut args = vec!["features", "--map", kernel, "--x", &xp, "--out", s(&feats)];
        args.extend(&flags);
        let (code, _, stderr) = polyattn(&args);
        assert_eq!(code, 0, "{kernel}: {stderr}");
        let phi = read_npy(&feats).unwrap();
        let m = phi.shape[1];
        assert_eq!(phi.shape[0], n);
        let TensorData::F64(phi) = phi.data else {
            panic!("f64")
        };
        let out = f.path(&format!("attn_{kernel}.npy"));
        let mut args = vec![
            "attend",
            "--q",
            &xp,
            "--k",
            &xp,
            "--v",
            &xp,
            "--kernel",
            kernel,
            "--norm",
            norm,
            "--out",
            s(&out),
        ];
        args.extend(&flags);
        let (code, _, stderr) = polyattn(&args);
        assert_eq!(code, 0, "{kernel}: {stderr}");
        let TensorData::F64(attended) = read_npy(&out).unwrap().data else {
            panic!("f64")
        };
        for i in 0..n {
            let mut num = vec![0.0; d];
            let (mut den, mut magnitude) = (bias, bias);
            for j in 0..n {
                let w: f64 = (0..m).map(|l| phi[i * m + l] * phi[j * m + l]).sum();
                if kernel == "polysketch" {
                    assert!(w >= -1e-12, "self-tensored weights are non-negative");
                }
                den += w;
                magnitude += w.abs();
                for c in 0..d {
                    num[c] += w * x[j * d + c] as f64;
                }
            }
            for c in 0..d {
                let want = num[c] / den;
                assert!(
                    (attended[i * d + c] - want).abs() < 1e-9 * magnitude / den.abs(),
                    "{kernel} row {i}: {} vs {want}",
                    attended[i * d + c],
                );
            }
        }
    }
    let (code, stdout, _) = polyattn(&[
        "attend",
        "--q",
        &xp,
        "--k",
        &xp,
        "--v",
        &xp,
        "--kernel",
        "polysketch",
        "--causal",
        "--repeat",
        "2",
    ]);
    assert_eq!(code, 0);
    let record: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(record["kernel"], "polysketch");
    assert!(record["gflop"].as_f64().unwrap() > 0.0);
    for (args, needle) in [
        (
            vec!["--kernel", "exact2", "--degree", "4"],
            "exactly degree 2",
        ),
        (vec!["--kernel", "poly", "--block", "8"], "only applies"),
        (
            vec!["--kernel", "polysketch", "--local-exact"],
            "needs --causal",
        ),
        (
            vec!["--kernel", "favor", "--causal", "--local-exact"],
            "not available with favor",
        ),
        (vec!["--kernel", "polysketch", "--block", "0"], "--block"),
        (
            vec!["--kernel", "polysketch", "--sketch-dim", "0"],
            "sketch-dim",
        ),
    ] {
        let mut full = vec!["attend", "--q", &xp, "--k", &xp, "--v", &xp];
        full.extend(args);
        expect_error(&full, needle);
    }
    let mut with_nan = x.clone();
    with_nan[9] = f32::NAN;
    let nan = f.npy("nan.npy", &[n, d], &with_nan);
    let feats = f.path("phi.npy");
    expect_error(
        &[
            "features",
            "--map",
            "exact2",
            "--x",
            &nan,
            "--out",
            s(&feats),
        ],
        "NaN at row 2, column 1",
    );
    expect_error(
        &["features", "--map", "poly", "--x", &xp, "--out", s(&feats)],
        "not a feature map",
    );
}
