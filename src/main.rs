//! The `ferry` binary: parse configuration, set up logging, run the chosen command.

use std::process::ExitCode;

use clap::Parser;
use ferry::config::{Cli, Command, LogFormat};
use tracing_subscriber::EnvFilter;

fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(config) => {
            init_tracing(config.log_format);
            ferry::app::serve(*config).await
        }
        Command::Migrate(config) => {
            init_tracing(LogFormat::Text);
            match ferry::db::Database::open(&config, 2).await {
                Ok(database) => {
                    tracing::info!("migrations applied");
                    database.close().await;
                    Ok(())
                }
                Err(error) => Err(error),
            }
        }
        Command::RotateKeys(args) => {
            init_tracing(LogFormat::Text);
            ferry::crypto::rotate::run(&args).await
        }
        Command::Token(args) => {
            let subject = args
                .subject
                .clone()
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            ferry::auth::mint_token_for(
                &args.jwt_secret,
                args.tenant,
                &args.roles,
                args.ttl,
                &subject,
                args.audience.as_deref(),
                args.issuer.as_deref(),
            )
            .map(|token| println!("{token}"))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ferry: {error:#}");
            ExitCode::FAILURE
        }
    }
}
