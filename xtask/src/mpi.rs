//! `cargo xtask mpi-check`, and the `mpirun` command line the other tasks use.
//!
//! The distributed crate (poly-dist) and the CLI's `--distributed` build against OpenMPI through
//! the `mpi` crate, whose build script needs `mpicc` and libclang (bindgen). This says in one
//! line what is missing and the Debian command that installs it.

use std::path::Path;
use std::process::Command;

/// The Debian packages the distributed build and tests need.
pub const PACKAGES: &str = "openmpi-bin libopenmpi-dev clang libclang-dev";

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// Whether a libclang shared library is where bindgen looks (or `LIBCLANG_PATH` names one).
fn libclang_found() -> bool {
    let has_libclang = |dir: &Path| {
        std::fs::read_dir(dir).is_ok_and(|entries| {
            entries.flatten().any(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                name.starts_with("libclang") && name.contains(".so")
            })
        })
    };
    if let Some(dir) = std::env::var_os("LIBCLANG_PATH") {
        return has_libclang(Path::new(&dir));
    }
    let mut dirs = vec![
        Path::new("/usr/lib").to_owned(),
        Path::new("/usr/lib/x86_64-linux-gnu").to_owned(),
        Path::new("/usr/lib64").to_owned(),
    ];
    if let Ok(entries) = std::fs::read_dir("/usr/lib") {
        dirs.extend(
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("llvm-"))
                .map(|e| e.path().join("lib")),
        );
    }
    dirs.iter().any(|d| has_libclang(d))
}

/// Checks that MPI and libclang are installed.
///
/// # Errors
/// A one-line message naming what is missing and how to install it.
pub fn check() -> Result<(), String> {
    let mpicc = std::env::var("MPICC").unwrap_or_else(|_| "mpicc".into());
    let missing: Vec<&str> = [
        (mpicc.as_str(), on_path(&mpicc)),
        ("mpirun", on_path("mpirun")),
        ("libclang", libclang_found()),
    ]
    .iter()
    .filter(|(_, found)| !found)
    .map(|(name, _)| *name)
    .collect();
    if !missing.is_empty() {
        return Err(format!(
            "MPI tooling missing ({}): install it with `sudo apt-get install -y {PACKAGES}` \
             (or set MPICC / LIBCLANG_PATH)",
            missing.join(", ")
        ));
    }
    let version = Command::new("mpirun")
        .arg("--version")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_owned()
        })
        .unwrap_or_default();
    eprintln!("mpi-check: {version}; mpicc and libclang found");
    Ok(())
}

/// `mpirun -np <ranks>` with the flags one machine needs: more ranks than cores
/// (`--oversubscribe`), and root in containers (OpenMPI's two opt-in variables).
pub fn mpirun(ranks: usize) -> Command {
    let mut c = Command::new("mpirun");
    c.args(["-np", &ranks.to_string(), "--oversubscribe"])
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1");
    c
}
