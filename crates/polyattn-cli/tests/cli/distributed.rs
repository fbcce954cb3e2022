//! `mpirun -np P polyattn attend --distributed` (with the `distributed` feature) against the
//! single-process command on the same files; without the feature, the flag's error.

use super::{Files, random, s};

#[cfg(feature = "distributed")]
fn mpirun(ranks: usize, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new("mpirun")
        .args(["-np", &ranks.to_string(), "--oversubscribe"])
        .arg(env!("CARGO_BIN_EXE_polyattn"))
        .args(args)
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .output()
        .expect("mpirun runs (install OpenMPI: see the README)");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[cfg(feature = "distributed")]
#[test]
fn distributed_runs_write_the_single_process_output() {
    let files = Files::new();
    // n = 512 in blocks of 64: even shards of 2 or 4 ranks fall on the sketched engine's chunk
    // grid, so its ordered scan must reproduce the file bit for bit.
    let (b, h, n, d, dv) = (1, 2, 512, 8, 4);
    let q = files.npy("q.npy", &[b, h, n, d], &random(1, b * h * n * d));
    let k = files.npy("k.npy", &[b, h, n, d], &random(2, b * h * n * d));
    let v = files.npy("v.npy", &[b, h, n, dv], &random(3, b * h * n * dv));
    // The flags of both runs, then those of the distributed run only.
    let cases: [(&[&str], &[&str]); 4] = [
        (&["--causal"], &[]),
        (&["--kernel", "softmax"], &["--shards", "zigzag"]),
        (
            &["--kernel", "polysketch", "--causal", "--block", "64"],
            &[],
        ),
        (
            &["--kernel", "polysketch", "--block", "64"],
            &["--scan", "tree"],
        ),
    ];
    for (i, (extra, only_distributed)) in cases.iter().enumerate() {
        let one = files.path(&format!("one{i}.npy"));
        let mut args = vec!["attend", "--q", &q, "--k", &k, "--v", &v, "--out", s(&one)];
        args.extend_from_slice(extra);
        let (code, _, stderr) = super::polyattn(&args);
        assert_eq!(code, 0, "{stderr}");
        let expected = super::read_f32(&one, &[b, h, n, dv]);
        for ranks in [2, 3] {
            let many = files.path(&format!("many{i}_{ranks}.npy"));
            let mut args = vec!["attend", "--q", &q, "--k", &k, "--v", &v, "--out", s(&many)];
            args.extend_from_slice(extra);
            args.extend_from_slice(only_distributed);
            args.push("--distributed");
            let (code, _, stderr) = mpirun(ranks, &args);
            assert_eq!(code, 0, "{extra:?} on {ranks} ranks: {stderr}");
            let got = super::read_f32(&many, &[b, h, n, dv]);
            let scale = expected.iter().fold(0f32, |m, x| m.max(x.abs()));
            let err = got
                .iter()
                .zip(&expected)
                .fold(0f32, |m, (a, e)| m.max((a - e).abs()))
                / scale;
            assert!(
                err <= 1e-5,
                "{extra:?} on {ranks} ranks: relative error {err}"
            );
            if i == 2 && ranks == 2 {
                assert_eq!(
                    got, expected,
                    "the ordered scan on aligned shards is bit-identical"
                );
            }
        }
    }
}

#[cfg(feature = "distributed")]
#[test]
fn distributed_runs_read_rows_of_a_safetensors_file() {
    let files = Files::new();
    let (h, n, d) = (3, 97, 5);
    let x: Vec<Vec<f32>> = (0..3).map(|i| random(10 + i, h * n * d)).collect();
    let input = files.path("qkv.safetensors");
    let shape = vec![h, n, d];
    poly_data::write_safetensors_f32(
        &input,
        &[
            ("q", shape.clone(), &x[0]),
            ("k", shape.clone(), &x[1]),
            ("v", shape, &x[2]),
        ],
    )
    .unwrap();
    let (one, many) = (files.path("one.npy"), files.path("many.npy"));
    let (code, _, stderr) =
        super::polyattn(&["attend", "--input", s(&input), "--causal", "--out", s(&one)]);
    assert_eq!(code, 0, "{stderr}");
    let args = [
        "attend",
        "--input",
        s(&input),
        "--causal",
        "--out",
        s(&many),
        "--distributed",
    ];
    let (code, _, stderr) = mpirun(3, &args);
    assert_eq!(code, 0, "{stderr}");
    let (a, b) = (
        super::read_f32(&one, &[h, n, d]),
        super::read_f32(&many, &[h, n, d]),
    );
    let err = a
        .iter()
        .zip(&b)
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(err <= 1e-5, "{err}");
}

#[cfg(feature = "distributed")]
#[test]
fn a_bad_shard_fails_the_job_with_one_error_line() {
    let files = Files::new();
    let (n, d) = (64, 4);
    let mut keys = random(5, n * d);
    // Row 60 lies in the last rank's contiguous shard.
    keys[60 * d + 1] = f32::NAN;
    let q = files.npy("q.npy", &[n, d], &random(4, n * d));
    let k = files.npy("k.npy", &[n, d], &keys);
    let out = files.path("o.npy");
    let args = [
        "attend",
        "--q",
        &q,
        "--k",
        &k,
        "--v",
        &q,
        "--out",
        s(&out),
        "--distributed",
        "--causal",
        "--shards",
        "contiguous",
    ];
    let (code, _, stderr) = mpirun(3, &args);
    assert_eq!(code, 2, "{stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(errors.len(), 1, "one line per job, not per rank: {stderr}");
    assert!(
        errors[0].contains("rank 2") && errors[0].contains("k") && errors[0].contains("60"),
        "{stderr}"
    );
    assert!(!out.exists(), "no output file after a failure");
    // More ranks than rows: every rank refuses alike (none is left waiting), one line.
    let tiny = files.npy("tiny.npy", &[3, d], &random(6, 3 * d));
    let out_tiny = files.path("tiny_out.npy");
    let args = [
        "attend",
        "--q",
        &tiny,
        "--k",
        &tiny,
        "--v",
        &tiny,
        "--out",
        s(&out_tiny),
        "--distributed",
    ];
    let (code, _, stderr) = mpirun(4, &args);
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(
        stderr.lines().filter(|l| l.starts_with("error: ")).count(),
        1,
        "{stderr}"
    );
    assert!(stderr.contains("at least one row"), "{stderr}");
    // Flags a distributed run cannot take are refused before MPI starts.
    let (code, _, stderr) = mpirun(
        2,
        &["attend", "--q", &q, "--k", &q, "--v", &q, "--distributed"],
    );
    assert_eq!(code, 2);
    assert_eq!(
        stderr.lines().filter(|l| l.starts_with("error: ")).count(),
        1,
        "{stderr}"
    );
    assert!(stderr.contains("--out"), "{stderr}");
}

#[cfg(not(feature = "distributed"))]
#[test]
fn without_the_feature_distributed_says_how_to_build_it() {
    let files = Files::new();
    let q = files.npy("q.npy", &[8, 4], &random(4, 32));
    let out = files.path("o.npy");
    super::expect_error(
        &[
            "attend",
            "--q",
            &q,
            "--k",
            &q,
            "--v",
            &q,
            "--out",
            s(&out),
            "--distributed",
        ],
        "--features distributed",
    );
}
