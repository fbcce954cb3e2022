//! The Python package's tests and benchmarks: a venv under the target directory with maturin,
//! numpy and pytest (python/requirements-dev.txt), the extension built into it by maturin.

use crate::shell::{target_dir, workspace_root};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A Python environment: its root (for `VIRTUAL_ENV`) and interpreter.
pub struct Env {
    root: PathBuf,
    python: PathBuf,
}

impl Env {
    /// `<target>/python-venv`, created on first use from `$POLYATTN_PYTHON` (else `python3`)
    /// with python/requirements-dev.txt installed; or, when `$POLYATTN_VENV` names an existing
    /// venv (one with torch, say), that one, with the same requirements added.
    pub fn prepare() -> Result<Env, String> {
        let (root, given) = match std::env::var_os("POLYATTN_VENV") {
            Some(dir) => (PathBuf::from(dir), true),
            None => (target_dir()?.join("python-venv"), false),
        };
        let python = root.join("bin").join("python");
        let marker = root.join(".polyattn-requirements");
        let requirements = workspace_root().join("python/requirements-dev.txt");
        let wanted = std::fs::read_to_string(&requirements)
            .map_err(|e| format!("{}: {e}", requirements.display()))?;
        if !python.exists() {
            if given {
                return Err(format!(
                    "POLYATTN_VENV={} has no bin/python",
                    root.display()
                ));
            }
            let base = std::env::var("POLYATTN_PYTHON").unwrap_or_else(|_| "python3".into());
            run(
                Command::new(&base).args(["-m", "venv"]).arg(&root),
                "create the venv",
            )
            .map_err(|e| format!("{e} (set POLYATTN_PYTHON to a Python ≥ 3.9 with venv)"))?;
        }
        if std::fs::read_to_string(&marker).ok().as_deref() != Some(&wanted) {
            let pip = [
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
            ];
            run(
                Command::new(&python).args(pip).arg(&requirements),
                "pip install",
            )?;
            std::fs::write(&marker, &wanted).map_err(|e| format!("{}: {e}", marker.display()))?;
        }
        Ok(Env { root, python })
    }

    /// `maturin develop` of python/ into this environment, with a cargo profile (`pytest` for
    /// tests: the test profile's speed, its dependencies' artifacts; `release` for benchmarks).
    pub fn install_package(&self, profile: &str) -> Result<(), String> {
        let maturin = self.root.join("bin").join("maturin");
        let mut command = Command::new(&maturin);
        command
            .args(["develop", "--quiet", "--profile", profile, "-m"])
            .arg(workspace_root().join("python/Cargo.toml"))
            .env("VIRTUAL_ENV", &self.root)
            .env_remove("CONDA_PREFIX");
        run(&mut command, "maturin develop")
    }

    /// `python <args>` in the workspace root.
    pub fn python(&self, args: &[&str]) -> Result<(), String> {
        let mut command = Command::new(&self.python);
        command.args(args).current_dir(workspace_root());
        run(&mut command, &format!("python {}", args.join(" ")))
    }
}

fn run(command: &mut Command, what: &str) -> Result<(), String> {
    eprintln!("$ {}", describe(command));
    let status = command
        .status()
        .map_err(|e| format!("cannot {what}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({status})"))
    }
}

fn describe(command: &Command) -> String {
    let program = Path::new(command.get_program());
    let name = program.file_name().unwrap_or(program.as_os_str());
    let mut line = name.to_string_lossy().into_owned();
    for arg in command.get_args() {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    line
}

/// The Python tests: the package built with the `pytest` profile, then pytest on python/tests.
pub fn test() -> Result<(), String> {
    let env = Env::prepare()?;
    env.install_package("pytest")?;
    env.python(&["-m", "pytest", "-q", "python/tests"])
}

/// The Python benchmark (python/bench/peers.py) on a release build; arguments go to the script.
pub fn bench(args: &[String]) -> Result<(), String> {
    let env = Env::prepare()?;
    env.install_package("release")?;
    let mut full = vec!["python/bench/peers.py"];
    full.extend(args.iter().map(String::as_str));
    env.python(&full)
}
