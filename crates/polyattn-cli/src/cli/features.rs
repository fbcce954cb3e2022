//! `polyattn features`: writes the feature matrix φ(X) that attention uses for the same flags.

use super::maps::map_spec;
use super::{CliError, DtypeArg, FeaturesArgs};
use poly_data::read_npy;
use poly_sketch::{MapSpec, SketchElement};

pub fn run(args: &FeaturesArgs) -> Result<(), CliError> {
    let spec = map_spec(args.map, &args.params)?;
    let x = read_npy(&args.x)?;
    match DtypeArg::resolve(args.dtype, x.dtype()) {
        "f64" => write_features::<f64>(args, &spec, &x),
        _ => write_features::<f32>(args, &spec, &x),
    }
}

fn write_features<T: SketchElement + npyz::AutoSerialize>(
    args: &FeaturesArgs,
    spec: &MapSpec,
    x: &poly_data::LoadedTensor,
) -> Result<(), CliError> {
    let d = match x.shape.last() {
        Some(&d) if d > 0 && !x.shape.contains(&0) => d,
        _ => {
            return Err(CliError::Data(poly_data::DataError::BadRank {
                path: args.x.clone(),
                shape: x.shape.clone(),
            }));
        }
    };
    let data: Vec<T> = x.to_vec();
    let map = spec.build::<T>(d)?;
    let features = map.map_rows(&data)?;
    let rows = data.len() / d;
    poly_data::write_npy(&args.out, &[rows, map.feature_dim()], &features)?;
    Ok(())
}
