//! The distributed engines under real MPI: `mpirun -np P poly-dist-selftest` for P = 1 … 4 on
//! this machine (oversubscribed beyond its cores). The self-test compares every rank's shard
//! with the single-process engines and checks that failures reach every rank alike; it exits
//! non-zero if any check failed on any rank.

use std::process::Command;

fn mpirun(ranks: usize) -> std::process::Output {
    Command::new("mpirun")
        .args(["-np", &ranks.to_string(), "--oversubscribe"])
        .arg(env!("CARGO_BIN_EXE_poly-dist-selftest"))
        // OpenMPI refuses to run as root without both; CI containers run as root.
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .output()
        .expect("mpirun runs: install OpenMPI (see README, `cargo xtask mpi-check`)")
}

fn check(ranks: usize) {
    let out = mpirun(ranks);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{ranks} ranks failed:\n{stdout}\n{stderr}"
    );
    let summary = format!("poly-dist-selftest: {ranks} ranks,");
    assert!(
        stdout.contains(&summary),
        "no summary from {ranks} ranks:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains(" 0 failures on all ranks"),
        "{stdout}\n{stderr}"
    );
    let checks: usize = stdout
        .split(" checks")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|s| s.parse().ok())
        .expect("a check count");
    // Every case runs on every rank count (the few sketched layouts that would leave a rank
    // empty are skipped): the self-test really ran its cases.
    assert!(checks >= 140, "only {checks} checks ran on {ranks} ranks");
}

#[test]
fn one_rank_equals_the_single_process_engines() {
    check(1);
}

#[test]
fn two_ranks_equal_the_single_process_engines() {
    check(2);
}

#[test]
fn three_ranks_equal_the_single_process_engines() {
    check(3);
}

#[test]
fn four_ranks_equal_the_single_process_engines() {
    check(4);
}
