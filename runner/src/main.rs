use std::process::ExitCode;

fn main() -> ExitCode {
    match runner::cli::run() {
        Ok(code) => code,
        Err(err) => {
            eprintln!("runner: {err:#}");
            ExitCode::FAILURE
        }
    }
}
