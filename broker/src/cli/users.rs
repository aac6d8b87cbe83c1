use anyhow::{Context, Result, bail};
use clap::Subcommand;
use lmq::Admin;
use serde_json::json;

use super::{Connect, Output, print_table};
use crate::security::scram::{ITERATIONS_MIN, ScramMechanism};

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// List users with SCRAM credentials (mechanisms and iterations, never secrets).
    ///
    /// Example: lmq users list
    List,
    /// Set a user's SCRAM password (salted and hashed here: the password never reaches the
    /// broker, as with kafka-configs.sh --entity-type users).
    ///
    /// Example: lmq users set-scram alice --mechanism SCRAM-SHA-512 --password-file alice.pw
    SetScram {
        user: String,
        /// SCRAM-SHA-256 or SCRAM-SHA-512
        #[arg(long, default_value = "SCRAM-SHA-512")]
        mechanism: String,
        /// File whose first line is the password (keeps it out of the shell history)
        #[arg(long, conflicts_with = "password")]
        password_file: Option<std::path::PathBuf>,
        /// The password itself
        #[arg(long)]
        password: Option<String>,
        /// PBKDF2 iterations, 4096 to 16384
        #[arg(long, default_value_t = ITERATIONS_MIN)]
        iterations: i32,
    },
    /// Remove a user's SCRAM credential for one mechanism.
    ///
    /// Example: lmq users delete-scram alice --mechanism SCRAM-SHA-512
    DeleteScram {
        user: String,
        #[arg(long, default_value = "SCRAM-SHA-512")]
        mechanism: String,
    },
}

fn mechanism(name: &str) -> Result<ScramMechanism> {
    ScramMechanism::from_name(name)
        .with_context(|| format!("--mechanism {name:?}: use SCRAM-SHA-256 or SCRAM-SHA-512"))
}

pub async fn run(command: UsersCommand, connect: &Connect) -> Result<()> {
    let admin = Admin::connect(connect.client()?).await?;
    match command {
        UsersCommand::List => {
            let users = admin.describe_scram_users().await?;
            let name = |code: i8| {
                ScramMechanism::from_code(code)
                    .map_or_else(|| code.to_string(), |m| m.name().to_string())
            };
            match connect.output {
                Output::Json => println!(
                    "{}",
                    json!(users.iter().map(|user| json!({
                        "user": user.user,
                        "credentials": user.mechanisms.iter().map(|(code, iterations)| json!({"mechanism": name(*code), "iterations": iterations})).collect::<Vec<_>>(),
                    })).collect::<Vec<_>>())
                ),
                Output::Table => print_table(
                    &["USER", "MECHANISM", "ITERATIONS"],
                    &users
                        .iter()
                        .flat_map(|user| {
                            user.mechanisms.iter().map(|(code, iterations)| {
                                vec![user.user.clone(), name(*code), iterations.to_string()]
                            })
                        })
                        .collect::<Vec<_>>(),
                ),
            }
        }
        UsersCommand::SetScram {
            user,
            mechanism: name,
            password_file,
            password,
            iterations,
        } => {
            let mechanism = mechanism(&name)?;
            let password = match (password_file, password) {
                (Some(path), _) => std::fs::read_to_string(&path)
                    .with_context(|| format!("reading --password-file {}", path.display()))?
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_string(),
                (None, Some(password)) => password,
                (None, None) => bail!("give the password with --password-file FILE or --password"),
            };
            if password.is_empty() {
                bail!("the password is empty");
            }
            let salt = uuid::Uuid::new_v4().as_bytes().to_vec();
            let rounds = u32::try_from(iterations)
                .with_context(|| format!("--iterations {iterations} must be positive"))?;
            let salted = mechanism.salted_password(password.as_bytes(), &salt, rounds);
            admin
                .alter_scram_credential(&user, mechanism.code(), Some((iterations, salt, salted)))
                .await?;
            println!("set {} credential of {user}", mechanism.name());
        }
        UsersCommand::DeleteScram {
            user,
            mechanism: name,
        } => {
            let mechanism = mechanism(&name)?;
            admin
                .alter_scram_credential(&user, mechanism.code(), None)
                .await?;
            println!("deleted {} credential of {user}", mechanism.name());
        }
    }
    Ok(())
}
