//! CLI errors and their exit codes: 2 for bad input or usage, 1 for internal failures.

use std::fmt;

#[derive(Debug)]
pub enum CliError {
    /// A flag combination or value the command cannot use.
    Usage(String),
    /// A file that cannot be read or written, or has the wrong contents.
    Data(poly_data::DataError),
    /// The attention inputs or configuration are invalid.
    Attention(poly_core::Error),
    /// An output file or folder could not be written.
    Output(String),
    /// A distributed run failed; every rank has the same message, and only the root `report`s
    /// it (one line per job, not per rank).
    Distributed { message: String, report: bool },
}

impl CliError {
    /// Whether this process should print the error (a distributed job's other ranks stay quiet).
    pub fn reported_here(&self) -> bool {
        !matches!(self, CliError::Distributed { report: false, .. })
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Usage(_)
            | CliError::Data(_)
            | CliError::Attention(_)
            | CliError::Output(_)
            | CliError::Distributed { .. } => 2,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Usage(msg) => f.write_str(msg),
            CliError::Data(e) => write!(f, "{e}"),
            // The library's hint names its types; here it names the flags.
            CliError::Attention(poly_core::Error::IllConditionedNormalizer {
                at,
                ratio,
                tolerance,
            }) => write!(
                f,
                "{at}: normalizer is ill-conditioned (|sum w| / magnitude of its terms = \
                 {ratio:.3e} < {tolerance:.0e}); odd degrees and signed sketches give weights \
                 that cancel: use an even --degree (sketched: --kernel polysketch), or \
                 --norm one-plus-sum / --norm none"
            ),
            CliError::Attention(e) => write!(f, "{e}"),
            CliError::Output(msg) => f.write_str(msg),
            CliError::Distributed { message, .. } => f.write_str(message),
        }
    }
}

impl From<poly_data::DataError> for CliError {
    fn from(e: poly_data::DataError) -> Self {
        CliError::Data(e)
    }
}

impl From<poly_core::Error> for CliError {
    fn from(e: poly_core::Error) -> Self {
        CliError::Attention(e)
    }
}
