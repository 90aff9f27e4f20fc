//! `etcdctl completion bash|zsh|fish|powershell`: the shell completion
//! script, generated from the same clap definition the binary parses with.

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use crate::error::{CtlError, CtlResult};
use crate::Cli;

#[derive(Args, Debug)]
pub struct CompletionArgs {
    /// bash, zsh, fish or powershell
    #[arg(value_name = "shell")]
    pub shell: Vec<String>,
}

pub fn run(args: CompletionArgs) -> CtlResult {
    let [shell] = args.shell.as_slice() else {
        return Err(CtlError::error(format!(
            "accepts 1 arg(s), received {}",
            args.shell.len()
        )));
    };
    let shell = match shell.as_str() {
        "bash" => Shell::Bash,
        "zsh" => Shell::Zsh,
        "fish" => Shell::Fish,
        "powershell" => Shell::PowerShell,
        other => {
            return Err(CtlError::error(format!(
                "invalid argument \"{other}\" for \"etcdctl completion\""
            )))
        }
    };
    let mut command = Cli::command();
    clap_complete::generate(shell, &mut command, "etcdctl", &mut std::io::stdout());
    Ok(())
}
