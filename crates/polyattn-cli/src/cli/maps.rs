//! The feature maps the CLI offers, built the same way by `attend` and `features`, so that
//! `features` writes exactly the φ that attention uses for the same flags and seed.

use super::{CliError, KernelArg, KernelParams};
use poly_sketch::{MapKind, MapSpec};

/// Default sketch size: `r` for PolySketch (the self-tensored map then has `r(r+1)/2` features).
pub const DEFAULT_POLYSKETCH_DIM: usize = 32;
/// Default feature count of TensorSketch, Random Maclaurin and FAVOR+.
pub const DEFAULT_FEATURES: usize = 256;

/// The map named by a `--kernel`/`--map` value and its flags.
pub fn map_spec(kind: KernelArg, params: &KernelParams) -> Result<MapSpec, CliError> {
    let KernelParams {
        degree,
        sketch_dim,
        seed,
    } = *params;
    let usage = |msg: String| Err(CliError::Usage(msg));
    let kind = match kind {
        KernelArg::Polysketch => MapKind::PolySketch,
        KernelArg::Tensorsketch => MapKind::TensorSketch,
        KernelArg::Maclaurin => MapKind::RandomMaclaurin,
        KernelArg::Favor => MapKind::Favor,
        KernelArg::Exact2 => MapKind::Exact2,
        other => {
            return usage(format!(
                "{} is not a feature map; the maps are polysketch, tensorsketch, maclaurin, favor and exact2",
                super::kernel_name(other)
            ));
        }
    };
    match kind {
        MapKind::Exact2 => {
            if let Some(d) = degree.filter(|&d| d != 2) {
                return Err(super::attend::does_not_apply(
                    &format!("--degree {d}"),
                    "exact2, whose features are exactly degree 2",
                ));
            }
            for (flag, given) in [
                ("--sketch-dim", sketch_dim.is_some()),
                ("--seed", seed.is_some()),
            ] {
                if given {
                    return Err(super::attend::does_not_apply(
                        flag,
                        "exact2, whose features are deterministic",
                    ));
                }
            }
        }
        MapKind::Favor if degree.is_some() => {
            return Err(super::attend::does_not_apply(
                "--degree",
                "favor, which approximates softmax",
            ));
        }
        _ => {}
    }
    if sketch_dim == Some(0) {
        return usage("--sketch-dim must be at least 1".into());
    }
    if degree == Some(0) {
        return usage("--degree must be at least 1".into());
    }
    let default_dim = match kind {
        MapKind::PolySketch | MapKind::PolySketchTree => DEFAULT_POLYSKETCH_DIM,
        _ => DEFAULT_FEATURES,
    };
    let degree = match kind {
        MapKind::Exact2 => 2,
        MapKind::Favor => 1,
        _ => degree.unwrap_or(4),
    };
    Ok(MapSpec::new(
        kind,
        degree,
        sketch_dim.unwrap_or(default_dim),
        seed.unwrap_or(0),
    ))
}
