//! etcdctl's failures: a message for `Error: …` on stderr and a cobrautl
//! exit code, which scripts branch on.

use std::fmt;

use tonic::Code;

/// Exit codes (etcd's `cobrautl`), following tldp's conventions.
pub const EXIT_ERROR: u8 = 1;
pub const EXIT_BAD_CONNECTION: u8 = 2;
pub const EXIT_INVALID_INPUT: u8 = 3;
pub const EXIT_BAD_FEATURE: u8 = 4;
pub const EXIT_INTERRUPTED: u8 = 5;
// 6 (ExitIO) is defined by cobrautl but no etcdctl command uses it.
pub const EXIT_BAD_ARGS: u8 = 128;

/// What the command failed with, and how the process ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtlError {
    pub code: u8,
    pub message: String,
}

pub type CtlResult<T = ()> = Result<T, CtlError>;

impl CtlError {
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        CtlError {
            code,
            message: message.into(),
        }
    }

    /// A plain failure (exit code 1).
    pub fn error(message: impl Into<String>) -> Self {
        Self::new(EXIT_ERROR, message)
    }

    /// Wrong or missing arguments (exit code 128).
    pub fn bad_args(message: impl Into<String>) -> Self {
        Self::new(EXIT_BAD_ARGS, message)
    }

    /// A valid flag with a value we do not support (exit code 4).
    pub fn bad_feature(message: impl Into<String>) -> Self {
        Self::new(EXIT_BAD_FEATURE, message)
    }

    /// Ends the process with `code` and no `Error:` line (etcdctl's bare
    /// `os.Exit`, after it reported the failures itself).
    pub fn exit(code: u8) -> Self {
        Self::new(code, "")
    }

    /// A command deadline ran out (clientv3 reports the context's error).
    pub fn deadline() -> Self {
        Self::error("context deadline exceeded")
    }

    /// A gRPC failure as clientv3 shows it: etcd's own errors by their text
    /// (`etcdserver: requested lease not found`), anything else as grpc-go's
    /// `rpc error: code = … desc = …`.
    pub fn from_status(status: &tonic::Status) -> Self {
        Self::error(status_text(status))
    }

    /// Prints `Error: …` and ends the process at once, as etcdctl's
    /// `ExitWithError` does from any goroutine (a watch printer, a lock
    /// holder) while other work is still running.
    pub fn exit_now(&self) -> ! {
        let _ = std::io::Write::flush(&mut std::io::stdout());
        if !self.message.is_empty() {
            eprintln!("Error: {}", self.message);
        }
        std::process::exit(i32::from(self.code))
    }

    /// The same text with another exit code.
    pub fn with_code(mut self, code: u8) -> Self {
        self.code = code;
        self
    }
}

impl From<tonic::Status> for CtlError {
    fn from(status: tonic::Status) -> Self {
        CtlError::from_status(&status)
    }
}

impl fmt::Display for CtlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The text of a gRPC failure as a Go client prints it.
pub fn status_text(status: &tonic::Status) -> String {
    if let Some(known) = api::EtcdError::from_status(status) {
        return known.message().to_string();
    }
    if status.code() == Code::DeadlineExceeded && status.message().is_empty() {
        return "context deadline exceeded".into();
    }
    if status.code() == Code::Cancelled && status.message().is_empty() {
        return "context canceled".into();
    }
    format!(
        "rpc error: code = {} desc = {}",
        go_code_name(status.code()),
        status.message()
    )
}

/// grpc-go's `codes.Code.String()`.
pub fn go_code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd_errors_print_their_text_and_others_as_grpc_go() {
        let known = tonic::Status::new(Code::NotFound, "etcdserver: requested lease not found");
        assert_eq!(status_text(&known), "etcdserver: requested lease not found");
        let other = tonic::Status::new(Code::Unimplemented, "unknown service etcdserverpb.Auth");
        assert_eq!(
            status_text(&other),
            "rpc error: code = Unimplemented desc = unknown service etcdserverpb.Auth"
        );
    }
}
