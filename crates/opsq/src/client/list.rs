//! `opsq list`: jobs newest first, as a table or JSON lines.

use std::process::ExitCode;

use anyhow::Context;
use opsq_client::{Job, JobQuery, JobStatus};

use super::Session;

/// The longest title shown in the table; `--json` has it whole.
const MAX_TITLE_CHARS: usize = 60;

/// Arguments of `opsq list`.
#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// Only jobs in these statuses, comma-separated (notStarted, executing, resumed,
    /// unknown, succeeded, failed).
    #[arg(long, value_name = "S,...", value_delimiter = ',')]
    status: Vec<String>,
    /// Only kinds matching this glob, such as 'server.*'.
    #[arg(long, value_name = "GLOB")]
    kind: Option<String>,
    /// At most this many jobs [server default: 100].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    limit: Option<u32>,
    /// Only jobs older than this job number: the cursor a previous page printed.
    #[arg(long, value_name = "N")]
    before: Option<i64>,
    /// The account whose jobs (and its sub-accounts') to list (default: the account
    /// logged in to).
    #[arg(long)]
    alias: Option<String>,
    /// One JSON object per line (the job as the jobs API shows it) instead of a table.
    #[arg(long)]
    json: bool,
    /// The opsq server (default: the one logged in to).
    #[arg(long, env = "OPSQ_SERVER")]
    server: Option<String>,
}

/// Prints one page of jobs; the cursor for the next page goes to stderr.
pub async fn run(args: ListArgs) -> anyhow::Result<ExitCode> {
    let statuses = args
        .status
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(|s| {
            JobStatus::parse(s).with_context(|| {
                let all: Vec<&str> = JobStatus::ALL.iter().map(|s| s.as_str()).collect();
                format!("--status takes {}", all.join(", "))
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let session = Session::open(args.server, args.alias)?;
    let query = JobQuery { statuses, kind: args.kind, limit: args.limit, before: args.before };
    let page = session
        .client
        .list_jobs(&session.alias, &query)
        .await
        .with_context(|| format!("cannot list the jobs of account {}", session.alias))?;
    if args.json {
        for job in &page.items {
            super::print_line(&serde_json::to_string(job)?)?;
        }
    } else if page.items.is_empty() {
        eprintln!("no jobs match");
    } else {
        super::print_line(render_table(&page.items).trim_end())?;
    }
    if let Some(next) = page.next_before {
        eprintln!("more jobs: add --before {next}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The table: ID, STATUS, % (right-aligned), KIND, TITLE (shortened, one line).
fn render_table(jobs: &[Job]) -> String {
    let rows: Vec<[String; 5]> = jobs
        .iter()
        .map(|job| {
            [
                job.id.clone(),
                job.status.to_string(),
                format!("{}%", job.progress.percent),
                one_line(&job.kind, MAX_TITLE_CHARS),
                one_line(&job.title, MAX_TITLE_CHARS),
            ]
        })
        .collect();
    let header = ["ID", "STATUS", "%", "KIND", "TITLE"].map(String::from);
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let line = format!(
            "{:<w0$}  {:<w1$}  {:>w2$}  {:<w3$}  {}",
            row[0],
            row[1],
            row[2],
            row[3],
            row[4],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3],
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Text for one table cell: control characters (newlines, escapes a submitter put in
/// a title) become spaces, and long text is cut with an ellipsis.
fn one_line(text: &str, max: usize) -> String {
    let clean: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if clean.chars().count() <= max {
        clean
    } else {
        let mut short: String = clean.chars().take(max.saturating_sub(1)).collect();
        short.push('…');
        short
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: &str, status: &str, percent: u8, kind: &str, title: &str) -> anyhow::Result<Job> {
        Ok(serde_json::from_value(serde_json::json!({
            "id": id, "number": 1, "accountAlias": "OPSQ", "locationAlias": "WA1", "kind": kind,
            "title": title, "status": status,
            "progress": {"percent": percent, "stepNumber": 1, "description": ""},
        }))?)
    }

    #[test]
    fn the_table_aligns_columns_and_keeps_titles_on_one_line() -> anyhow::Result<()> {
        let jobs = vec![
            job("wa1-10", "executing", 40, "test.echo", "Echo\nsomething")?,
            job("wa1-9", "succeeded", 100, "server.powerOn", &"t".repeat(100))?,
        ];
        let table = render_table(&jobs);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "ID      STATUS        %  KIND            TITLE");
        assert_eq!(lines[1], "wa1-10  executing   40%  test.echo       Echo something");
        assert!(lines[2].starts_with("wa1-9   succeeded  100%  server.powerOn  ttt"), "{}", lines[2]);
        assert!(lines[2].ends_with('…'), "{}", lines[2]);
        assert_eq!(
            lines[2].chars().count(),
            "wa1-9   succeeded  100%  server.powerOn  ".len() + MAX_TITLE_CHARS
        );
        Ok(())
    }
}
