//! `attend --decode P`: token-by-token outputs through the KV cache (exact) or the decoding
//! states (sketched) equal the rows of `attend --causal` after the prompt, with grouped heads,
//! windows and the mixed variant.

use super::{Files, expect_error, polyattn, random, read_f32, s};

#[test]
fn decoding_reproduces_the_causal_rows_after_the_prompt() {
    let f = Files::new();
    let (b, h, h_kv, n, d, dv, prompt) = (2, 4, 2, 40, 8, 5, 13);
    let q = f.npy("q.npy", &[b, h, n, d], &random(1, b * h * n * d));
    let k = f.npy("k.npy", &[b, h_kv, n, d], &random(2, b * h_kv * n * d));
    let v = f.npy("v.npy", &[b, h_kv, n, dv], &random(3, b * h_kv * n * dv));
    let cases: [&[&str]; 4] = [
        &["--kernel", "poly", "--degree", "4"],
        &["--kernel", "poly", "--degree", "2", "--window", "9"],
        &["--kernel", "softmax"],
        &[
            "--kernel",
            "polysketch",
            "--sketch-dim",
            "8",
            "--block",
            "8",
            "--local-exact",
        ],
    ];
    for (c, extra) in cases.iter().enumerate() {
        let run = |decode: Option<&str>, tag: &str| {
            let out = f.path(&format!("o{c}{tag}.npy"));
            let mut args = vec![
                "attend", "--q", &q, "--k", &k, "--v", &v, "--causal", "--out",
            ];
            args.push(s(&out));
            args.extend_from_slice(extra);
            if let Some(p) = decode {
                args.extend(["--decode", p]);
            }
            let (code, _, stderr) = polyattn(&args);
            assert_eq!(code, 0, "{extra:?}: {stderr}");
            out
        };
        let whole = read_f32(&run(None, "w"), &[b, h, n, dv]);
        let decoded = read_f32(&run(Some("13"), "d"), &[b, h, n - prompt, dv]);
        for (head, rows) in decoded.chunks_exact((n - prompt) * dv).enumerate() {
            let want = &whole[(head * n + prompt) * dv..(head + 1) * n * dv];
            for (i, (a, w)) in rows.iter().zip(want).enumerate() {
                assert!(
                    (a - w).abs() <= 1e-5 * (1.0 + w.abs()),
                    "{extra:?} head {head} value {i}: {a} vs {w}"
                );
            }
        }
    }
    let base = ["attend", "--q", &q, "--k", &k, "--v", &v];
    expect_error(&[&base[..], &["--decode", "3"]].concat(), "--causal");
    expect_error(
        &[&base[..], &["--causal", "--decode", "40"]].concat(),
        "a prompt shorter than the sequence",
    );
    expect_error(
        &[
            &base[..],
            &["--causal", "--decode", "3", "--seq-lens", "20,20"],
        ]
        .concat(),
        "--seq-lens",
    );
}

#[test]
fn decoding_with_repeat_counts_the_decoded_rows() {
    let f = Files::new();
    let (h, n, d) = (2, 30, 4);
    let x = f.npy("x.npy", &[h, n, d], &random(4, h * n * d));
    let (code, stdout, stderr) = polyattn(&[
        "attend", "--q", &x, "--k", &x, "--v", &x, "--causal", "--decode", "10", "--repeat", "2",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let record: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    // Rows 10..30 see 11..=30 keys each: Σ = 410 pairs per head at 2·(d + d_v) FLOPs each.
    let pairs: f64 = (11..=30).map(f64::from).sum();
    let gflop = record["gflop"].as_f64().unwrap();
    assert!(
        (gflop - 2.0 * pairs * 2.0 * 2.0 * 4.0 / 1e9).abs() < 1e-15,
        "{gflop}"
    );
}
