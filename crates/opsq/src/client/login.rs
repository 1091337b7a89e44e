//! `opsq login`: trade a password for a token and save it.

use std::{
    io::{BufRead, IsTerminal},
    process::ExitCode,
};

use anyhow::{bail, Context};
use opsq_client::Client;

use super::config::{self, Credentials};

/// The environment variable read for the password when `--password-stdin` is not
/// given, for CI systems that inject secrets as variables.
const PASSWORD_ENV: &str = "OPSQ_PASSWORD";

/// Arguments of `opsq login`.
#[derive(clap::Args, Debug)]
pub struct LoginArgs {
    /// The user to log in as.
    #[arg(long, short = 'u')]
    username: String,
    /// Read the password from standard input (one line), e.g. from a secrets manager.
    /// Without it the password is taken from OPSQ_PASSWORD; it is never a flag, so it
    /// does not show up in shell history or `ps`.
    #[arg(long)]
    password_stdin: bool,
    /// The opsq server, e.g. http://127.0.0.1:8080 (default: the last one logged in to).
    #[arg(long, env = "OPSQ_SERVER")]
    server: Option<String>,
}

/// Logs in, saves the credentials and says who is logged in where.
pub async fn run(args: LoginArgs) -> anyhow::Result<ExitCode> {
    let password = if args.password_stdin {
        let stdin = std::io::stdin();
        if stdin.is_terminal() {
            eprint!("Password for {} (shown as you type; pipe it in to avoid that): ", args.username);
        }
        read_password_line(stdin.lock())?
    } else {
        password_from_env(std::env::var(PASSWORD_ENV).ok())?
    };
    let server = super::login_server(args.server)?;
    let client = Client::new(&server)?;
    let login = client
        .login(&args.username, &password)
        .await
        .with_context(|| format!("login to {} as {} failed", client.server(), args.username))?;
    let path = config::credentials_path()?;
    let credentials = Credentials {
        server: client.server().to_string(),
        token: login.bearer_token,
        user_name: login.user_name,
        account_alias: login.account_alias,
        location_alias: login.location_alias,
    };
    config::save(&path, &credentials)?;
    super::print_line(&format!(
        "Logged in as {} (account {}, location {})",
        credentials.user_name, credentials.account_alias, credentials.location_alias
    ))?;
    Ok(ExitCode::SUCCESS)
}

/// Reads one line and drops its line ending; only the ending, since spaces may be part
/// of a password.
fn read_password_line(mut input: impl BufRead) -> anyhow::Result<String> {
    let mut line = String::new();
    input.read_line(&mut line).context("cannot read the password from standard input")?;
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        bail!("no password on standard input: pipe it in, e.g. `printf '%s\\n' \"$PASS\" | opsq login --username USER --password-stdin`");
    }
    Ok(password.to_string())
}

/// The password from the environment, or an error saying both ways to give one.
fn password_from_env(value: Option<String>) -> anyhow::Result<String> {
    match value {
        Some(password) if !password.is_empty() => Ok(password),
        _ => {
            bail!("no password given: pass --password-stdin and pipe the password in, or set {PASSWORD_ENV}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdin_password_loses_only_its_line_ending() -> anyhow::Result<()> {
        assert_eq!(read_password_line(&b"s3cret\n"[..])?, "s3cret");
        assert_eq!(read_password_line(&b"s3cret\r\nignored\n"[..])?, "s3cret");
        assert_eq!(read_password_line(&b" with spaces \n"[..])?, " with spaces ");
        assert_eq!(read_password_line(&b"no-newline"[..])?, "no-newline");
        let err = read_password_line(&b"\n"[..]).err().context("empty is refused")?;
        assert!(err.to_string().contains("--password-stdin"), "{err}");
        Ok(())
    }

    #[test]
    fn env_password_or_a_clear_error() -> anyhow::Result<()> {
        assert_eq!(password_from_env(Some("pw".into()))?, "pw");
        for missing in [None, Some(String::new())] {
            let err = password_from_env(missing).err().context("refused")?;
            let text = err.to_string();
            assert!(text.contains("--password-stdin") && text.contains(PASSWORD_ENV), "{text}");
        }
        Ok(())
    }
}
