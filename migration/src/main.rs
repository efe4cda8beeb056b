//! `cargo run -p migration -- up|down|status|fresh`, for operators who want the migrations alone.
//! `chex migrate …` does the same from the main binary.
use sea_orm_migration::prelude::*;

#[tokio::main]
async fn main() {
    cli::run_cli(migration::Migrator).await;
}
