//! Loading q, k, v from `.npy` files or one `.safetensors` file.

use super::{AttendArgs, CliError};
use poly_data::{LoadedTensor, read_npy, read_safetensors};
use std::path::PathBuf;

/// The three input tensors, each with the file it came from (for error messages).
pub struct Inputs {
    pub tensors: [(PathBuf, LoadedTensor); 3],
}

impl Inputs {
    pub fn load(args: &AttendArgs) -> Result<Self, CliError> {
        if let Some(path) = &args.input {
            let [q, k, v]: [LoadedTensor; 3] = read_safetensors(path, &["q", "k", "v"])?
                .try_into()
                .map_err(|_| CliError::Usage("expected three tensors".into()))?;
            return Ok(Inputs {
                tensors: [(path.clone(), q), (path.clone(), k), (path.clone(), v)],
            });
        }
        let paths = match (&args.q, &args.k, &args.v) {
            (Some(q), Some(k), Some(v)) => [q.clone(), k.clone(), v.clone()],
            _ => {
                return Err(CliError::Usage(
                    "give the inputs as --q Q.npy --k K.npy --v V.npy or as --input FILE.safetensors".into(),
                ));
            }
        };
        let tensors = paths.map(|p| read_npy(&p).map(|t| (p, t)));
        let [q, k, v] = tensors;
        Ok(Inputs {
            tensors: [q?, k?, v?],
        })
    }

    /// The rank of q's file, which the output keeps.
    pub fn query_rank(&self) -> usize {
        self.tensors[0].1.shape.len()
    }

    /// The element type stored in q's file.
    pub fn query_dtype(&self) -> &'static str {
        self.tensors[0].1.dtype()
    }
}
