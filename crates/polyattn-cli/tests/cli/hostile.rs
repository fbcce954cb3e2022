//! Hostile inputs: sizes and counts from the user that used to be trusted before they were
//! checked. Each runs the binary under a 1 GiB address-space limit (`ulimit -v`), so an attempt
//! to allocate what the input claims shows up as a crash, and each must end with exit code 2 and
//! one `error:` line naming what is wrong, or with a correct result, quickly.

use super::{Files, random, s};
use std::process::Command;
use std::time::{Duration, Instant};

/// 1 GiB of address space, in KiB for `ulimit -v`.
const ADDRESS_SPACE_KIB: u64 = 1 << 20;

/// Runs polyattn under the address-space limit; (exit code, stdout, stderr, seconds).
fn limited(args: &[&str]) -> (i32, String, String, Duration) {
    let start = Instant::now();
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -v {ADDRESS_SPACE_KIB} && exec \"$0\" \"$@\""
        ))
        .arg(env!("CARGO_BIN_EXE_polyattn"))
        .args(args)
        .env("RAYON_NUM_THREADS", "2")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        start.elapsed(),
    )
}

/// Exit 2, `error:` first, `needle` in the message, no panic, within 20 s.
fn refused(args: &[&str], needle: &str) {
    let (code, _, stderr, took) = limited(args);
    assert_eq!(code, 2, "{args:?}: {stderr}");
    assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
    assert!(
        stderr.contains(needle),
        "{args:?}: expected {needle:?} in {stderr}"
    );
    assert!(
        !stderr.contains("panicked") && !stderr.contains("internal failure"),
        "{stderr}"
    );
    assert!(took < Duration::from_secs(20), "{args:?} took {took:?}");
}

/// Exit 0 under the limit.
fn accepted(args: &[&str]) -> String {
    let (code, stdout, stderr, _) = limited(args);
    assert_eq!(code, 0, "{args:?}: {stderr}");
    stdout
}

/// q, k, v of 40 tokens, d = 8.
fn small_inputs(f: &Files) -> [String; 3] {
    [1, 2, 3].map(|seed| f.npy(&format!("x{seed}.npy"), &[40, 8], &random(seed, 320)))
}

#[test]
fn a_block_longer_than_the_sequence_is_one_block() {
    let f = Files::new();
    let [q, k, v] = small_inputs(&f);
    let base = [
        "attend",
        "--q",
        &q,
        "--k",
        &k,
        "--v",
        &v,
        "--kernel",
        "polysketch",
        "--causal",
    ];
    let out = |block: &str| {
        let path = f.path(&format!("o{block}.npy"));
        let mut args = base.to_vec();
        args.extend(["--block", block, "--out", s(&path)]);
        accepted(&args);
        std::fs::read(&path).unwrap()
    };
    let whole = out("40");
    assert_eq!(out("1000000"), whole);
    assert_eq!(out("1000000000000"), whole);
}

#[test]
fn sketch_sizes_and_degrees_beyond_memory_are_refused_before_the_map_is_drawn() {
    let f = Files::new();
    let [q, k, v] = small_inputs(&f);
    let attend = |extra: &[&str]| {
        let mut args = vec!["attend", "--q", &q, "--k", &k, "--v", &v];
        args.extend_from_slice(extra);
        args.iter().map(|a| a.to_string()).collect::<Vec<_>>()
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            attend(&["--kernel", "polysketch", "--sketch-dim", "1000000000"]),
            "memory budget",
        ),
        (
            attend(&["--kernel", "tensorsketch", "--sketch-dim", "1000000000"]),
            "memory budget",
        ),
        (
            attend(&["--kernel", "maclaurin", "--sketch-dim", "1000000000"]),
            "memory budget",
        ),
        (
            attend(&["--kernel", "favor", "--sketch-dim", "1000000000"]),
            "memory budget",
        ),
        (
            attend(&["--kernel", "polysketch", "--degree", "3000000001"]),
            "degree",
        ),
        (
            attend(&["--kernel", "polysketch", "--degree", "4294967294"]),
            "memory budget",
        ),
        (
            attend(&["--kernel", "polysketch", "--degree", "4294967295"]),
            "degree",
        ),
        (
            attend(&["--kernel", "tensorsketch", "--degree", "1000000000"]),
            "memory budget",
        ),
        (
            attend(&["--kernel", "maclaurin", "--degree", "1000000"]),
            "memory budget",
        ),
    ];
    for (args, needle) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        refused(&args, needle);
    }
    let out = f.path("features.npy");
    for map in ["polysketch", "tensorsketch", "maclaurin", "favor"] {
        refused(
            &[
                "features",
                "--map",
                map,
                "--sketch-dim",
                "1000000000",
                "--x",
                &q,
                "--out",
                s(&out),
            ],
            "memory budget",
        );
    }
    assert!(!out.exists());
}

#[test]
fn outputs_repeats_and_threads_beyond_the_machine_are_refused() {
    let f = Files::new();
    // 800 KB of input asking for a 40 GB output.
    let q = f.npy("q.npy", &[100_000, 1], &random(1, 100_000));
    let k = f.npy("k.npy", &[1, 1], &[0.5]);
    let v = f.npy("v.npy", &[1, 100_000], &random(2, 100_000));
    refused(
        &["attend", "--q", &q, "--k", &k, "--v", &v],
        "attention output",
    );
    let [q, k, v] = small_inputs(&f);
    let base = ["attend", "--q", &q, "--k", &k, "--v", &v];
    for repeat in ["1000000000000", "18446744073709551615"] {
        let mut args = base.to_vec();
        args.extend(["--repeat", repeat]);
        refused(&args, "--repeat");
    }
    let mut args = base.to_vec();
    args.extend(["--threads", "1000000"]);
    refused(&args, "--threads 1000000");
    // A budget the user sets is honoured, and named.
    let mut args = base.to_vec();
    args.extend(["--max-memory", "1K"]);
    refused(&args, "over the memory budget of 1024 bytes");
    let mut args = base.to_vec();
    args.extend(["--max-memory", "0"]);
    refused(&args, "--max-memory");
}

/// A .npy file with a hand-written header.
fn npy_with_header(f: &Files, name: &str, version: u8, header: &str, data: &[u8]) -> String {
    let mut bytes = b"\x93NUMPY".to_vec();
    bytes.extend([version, 0]);
    if version == 1 {
        bytes.extend((header.len() as u16).to_le_bytes());
    } else {
        bytes.extend((header.len() as u32).to_le_bytes());
    }
    bytes.extend(header.as_bytes());
    bytes.extend(data);
    let path = f.path(name);
    std::fs::write(&path, bytes).unwrap();
    s(&path).to_owned()
}

#[test]
fn npy_headers_cannot_be_turned_against_the_machine() {
    let f = Files::new();
    let good = f.npy("good.npy", &[4, 2], &random(1, 8));
    let wraps = "(4294967296, 4294967296, 2)";
    let c_wrap = npy_with_header(
        &f,
        "c_wrap.npy",
        1,
        &format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {wraps}, }}\n"),
        &[0; 32],
    );
    let f_wrap = npy_with_header(
        &f,
        "f_wrap.npy",
        1,
        &format!("{{'descr': '<f4', 'fortran_order': True, 'shape': {wraps}, }}\n"),
        &[0; 32],
    );
    let deep = npy_with_header(
        &f,
        "deep.npy",
        1,
        &format!(
            "{{'descr': '<f4', 'fortran_order': False, 'shape': {}2, }}\n",
            "(".repeat(4000)
        ),
        &[0; 32],
    );
    // A version-2 header claiming 4 GiB in a 1.4 KB file.
    let mut huge = b"\x93NUMPY\x02\x00".to_vec();
    huge.extend(u32::MAX.to_le_bytes());
    huge.extend([b' '; 1400]);
    let huge_path = f.path("huge.npy");
    std::fs::write(&huge_path, huge).unwrap();
    let out = f.path("out.npy");
    for (bad, needle) in [
        (c_wrap.as_str(), "more elements than fit"),
        (f_wrap.as_str(), "more elements than fit"),
        (deep.as_str(), "malformed shape"),
        (s(&huge_path), "exceeds the 10000-byte limit"),
    ] {
        refused(&["attend", "--q", bad, "--k", &good, "--v", &good], needle);
        refused(
            &["features", "--map", "exact2", "--x", bad, "--out", s(&out)],
            needle,
        );
    }
    assert!(!out.exists(), "a refused run writes no output");
}

#[test]
fn a_failed_run_leaves_an_existing_output_untouched() {
    let f = Files::new();
    let [q, k, _] = small_inputs(&f);
    let out = f.path("o.npy");
    std::fs::write(&out, b"precious").unwrap();
    let mut nan = random(4, 320);
    nan[7] = f32::NAN;
    let v = f.npy("nan.npy", &[40, 8], &nan);
    refused(
        &["attend", "--q", &q, "--k", &k, "--v", &v, "--out", s(&out)],
        "non-finite",
    );
    assert_eq!(std::fs::read(&out).unwrap(), b"precious");
    let leftovers: Vec<_> = std::fs::read_dir(f.dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn overflowing_values_are_errors_or_right_never_silent() {
    let f = Files::new();
    // features of a 1e20 entry (f32) or 1e300 (f64) overflow at degree 4: refused.
    let x32 = f.npy(
        "x32.npy",
        &[2, 4],
        &[1e20, 0.5, 0.5, 0.5, 0.1, 0.2, 0.3, 0.4],
    );
    let out = f.path("f.npy");
    refused(
        &[
            "features",
            "--map",
            "polysketch",
            "--degree",
            "4",
            "--x",
            &x32,
            "--out",
            s(&out),
        ],
        "feature value",
    );
    let x64 = f.path("x64.npy");
    poly_data::write_npy(
        &x64,
        &[2, 4],
        &[1e300f64, 0.5, 0.5, 0.5, 0.1, 0.2, 0.3, 0.4],
    )
    .unwrap();
    refused(
        &[
            "features",
            "--map",
            "exact2",
            "--x",
            s(&x64),
            "--out",
            s(&out),
        ],
        "feature value",
    );
    assert!(!out.exists());
    // LayerNorm of rows near 1e200 in f64 equals LayerNorm of the same rows at 1e3 (where ε is
    // as negligible); it used to overflow to an infinite variance and zero rows.
    let base: Vec<f64> = random(5, 40 * 8).iter().map(|&x| x as f64).collect();
    let write = |name: &str, scale: f64| {
        let path = f.path(name);
        let data: Vec<f64> = base.iter().map(|x| x * scale).collect();
        poly_data::write_npy(&path, &[40, 8], &data).unwrap();
        s(&path).to_owned()
    };
    let (small, big) = (write("small.npy", 1e3), write("big.npy", 1e200));
    let run = |q: &str, name: &str| {
        let path = f.path(name);
        accepted(&[
            "attend",
            "--q",
            q,
            "--k",
            q,
            "--v",
            &small,
            "--kernel",
            "softmax",
            "--layernorm",
            "--out",
            s(&path),
        ]);
        poly_data::read_npy(&path).unwrap().to_vec::<f64>()
    };
    let (want, got) = (run(&small, "o_small.npy"), run(&big, "o_big.npy"));
    for (g, w) in got.iter().zip(&want) {
        // Relative to the values' scale (1e3): zeroed rows would be off by O(100).
        assert!((g - w).abs() < 1e-9 * 1e3, "{g} vs {w}");
    }
}

#[test]
fn flags_that_do_not_apply_are_refused_alike() {
    let f = Files::new();
    let [q, k, v] = small_inputs(&f);
    let base = ["attend", "--q", &q, "--k", &k, "--v", &v];
    for (extra, needle) in [
        (
            &["--kernel", "softmax", "--degree", "9"][..],
            "--degree does not apply to --kernel softmax",
        ),
        (&["--norm-bias", "5"], "--norm-bias does not apply"),
        (
            &["--norm", "none", "--norm-bias", "5"],
            "--norm-bias does not apply",
        ),
        (
            &["--block", "8"],
            "--block does not apply to the exact kernels",
        ),
        (
            &["--kernel", "exact2", "--seed", "3"],
            "--seed does not apply to exact2",
        ),
    ] {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        refused(&args, needle);
    }
    let st = f.path("qkv.safetensors");
    let x = random(6, 320);
    poly_data::write_safetensors_f32(
        &st,
        &[
            ("q", vec![40, 8], &x),
            ("k", vec![40, 8], &x),
            ("v", vec![40, 8], &x),
        ],
    )
    .unwrap();
    refused(
        &["attend", "--input", s(&st), "--k", &k],
        "cannot be used with",
    );
    // The ill-conditioned hint names the flags to change.
    let q1 = f.npy("q1.npy", &[1, 1], &[1.0]);
    let k1 = f.npy("k1.npy", &[2, 1], &[1.0, -1.0]);
    let v1 = f.npy("v1.npy", &[2, 1], &[1.0, 2.0]);
    refused(
        &[
            "attend", "--q", &q1, "--k", &k1, "--v", &v1, "--degree", "3",
        ],
        "use an even --degree (sketched: --kernel polysketch), or --norm one-plus-sum / --norm none",
    );
    // The sketched engine applies the same rule: these keys cancel for every odd-degree sketch.
    for kernel in ["polysketch", "tensorsketch", "maclaurin"] {
        refused(
            &[
                "attend", "--q", &q1, "--k", &k1, "--v", &v1, "--kernel", kernel, "--degree", "3",
            ],
            "normalizer is ill-conditioned",
        );
    }
}
