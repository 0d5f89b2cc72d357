//! `keywatch report`: spend per period and group, as a table, CSV or JSON.

use std::fmt::Write as _;

use chrono::Utc;
use chrono_tz::Tz;

use crate::cli::{Format, TimeArg};
use crate::config::Config;
use crate::exit;
use crate::report::{
    csv_field, fmt_opt as opt, sum_usd, Basis, Dim, PeriodKind, Report, Request, Row,
};
use crate::store::Store;

pub struct ReportArgs {
    pub period: PeriodKind,
    pub timezone: Option<String>,
    pub since: Option<TimeArg>,
    pub until: Option<TimeArg>,
    pub last: Option<u32>,
    pub by: Vec<Dim>,
    pub format: Format,
}

pub async fn run(config: &Config, args: ReportArgs) -> anyhow::Result<u8> {
    let zone: Tz = match &args.timezone {
        Some(name) => name.parse().map_err(|_| {
            anyhow::anyhow!(
                "--timezone {name:?} is not an IANA time zone (e.g. \"Europe/Berlin\", \"UTC\")"
            )
        })?,
        // One rule for the CLI, the API and the dashboard: `[http] timezone` when set.
        None => config.http.as_ref().map_or(Tz::UTC, |h| h.timezone),
    };
    let now = Utc::now();
    let req = Request {
        kind: args.period,
        zone,
        since: args.since.map(|s| s.resolve_in(now, zone)),
        until: args.until.map(|u| u.resolve_in(now, zone)),
        last: args.last,
        by: args.by.clone(),
    };
    let store = Store::connect_existing(&config.storage).await?;
    let report = crate::report::load(&store, config.poll.bucket_width.seconds(), &req, now).await;
    store.close().await;
    let Report {
        periods,
        rows,
        dims,
    } = report?.map_err(anyhow::Error::msg)?;
    let text = match args.format {
        Format::Csv => crate::report::to_csv(&rows, &dims),
        Format::Json => serde_json::to_string_pretty(&rows)? + "\n",
        Format::Table => table(&rows, &periods, zone, &dims),
    };
    print!("{text}");
    Ok(exit::OK)
}

fn cut(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        s.chars().take(n - 1).collect::<String>() + "…"
    }
}

/// At most 100 columns: period, group, input and output tokens, the best known USD and its
/// basis, change and share; a total row per period, and what its marks mean.
fn table(rows: &[Row], periods: &[crate::report::Period], tz: Tz, dims: &[Dim]) -> String {
    let noun = periods.first().map_or("period", |p| p.kind.noun());
    let mut o = format!(
        "spend per {noun} in {tz}: billed where the provider bills per key, else estimated\n"
    );
    let _ = writeln!(
        o,
        "{:<10} {:<26} {:>11} {:>10} {:>11} {:<9} {:>7} {:>6}",
        "period", "group", "input tok", "output tok", "USD", "basis", "change", "share"
    );
    for (i, p) in periods.iter().enumerate() {
        let in_period: Vec<&Row> = rows.iter().filter(|r| r.period == p.label).collect();
        for r in &in_period {
            let group = r
                .group
                .iter()
                .filter(|(k, v)| *k != "key_name" || !v.is_empty())
                .filter(|(k, _)| {
                    *k != "key_id"
                        || !r
                            .group
                            .iter()
                            .any(|(n, v)| *n == "key_name" && !v.is_empty())
                })
                .map(|(_, v)| crate::text::clean(v))
                .collect::<Vec<_>>()
                .join(" / ");
            let _ = writeln!(
                o,
                "{:<10} {:<26} {:>11} {:>10} {:>11} {:<9} {:>7} {:>5.1}%",
                if r.partial {
                    format!("{}*", r.period)
                } else {
                    r.period.clone()
                },
                cut(&group, 26),
                crate::report::input_tokens(&r.tokens),
                r.tokens.output,
                money(r.spend_usd, r.basis),
                r.basis.as_str(),
                r.change_pct
                    .map(|c| format!("{c:+.0}%"))
                    .unwrap_or_else(|| "new".to_owned()),
                r.share_pct
            );
        }
        let total = sum_usd(in_period.iter().map(|r| r.spend_usd));
        let basis = if in_period.iter().any(|r| r.basis == Basis::Floor) {
            Basis::Floor
        } else if !in_period.is_empty() && in_period.iter().all(|r| r.basis == Basis::Billed) {
            Basis::Billed
        } else {
            Basis::Estimated
        };
        let unpriced = in_period
            .iter()
            .fold(0i64, |a, r| a.saturating_add(r.unpriced_tokens));
        let _ = writeln!(
            o,
            "{:<10} {:<26} {:>11} {:>10} {:>11} {:<9}",
            p.label,
            "total",
            "",
            "",
            money(total, basis),
            basis.as_str()
        );
        if in_period.iter().any(|r| r.partial) {
            let before = i
                .checked_sub(1)
                .and_then(|j| periods.get(j))
                .cloned()
                .or_else(|| p.previous())
                .map_or_else(|| "the one before".to_owned(), |b| b.label);
            let _ = writeln!(
                o,
                "{:<10} * to date: its change is against {before} up to the same point",
                ""
            );
        }
        if basis == Basis::Floor {
            let _ = writeln!(
                o,
                "{:<10} >= is a floor: {unpriced} tokens on models without a price are left out \
                 (--by model)",
                ""
            );
        }
        o.push('\n');
    }
    let utc_days = periods
        .iter()
        .all(|p| p.start.timestamp() % 86_400 == 0 && p.end.timestamp() % 86_400 == 0);
    let estimates_only = dims.contains(&Dim::Model) || dims.contains(&Dim::Tier);
    if !(utc_days || estimates_only) {
        o.push_str(
            "bills count per whole UTC day: UTC days cut by a period's edges are estimated\n",
        );
    }
    if estimates_only {
        o.push_str("by model or tier, every figure is an estimate: cost reports carry neither\n");
    }
    o
}

/// USD with two decimals, prefixed `>=` when it is a floor.
fn money(usd: f64, basis: Basis) -> String {
    if basis == Basis::Floor {
        format!(">={usd:.2}")
    } else {
        format!("{usd:.2}")
    }
}

/// `report --forecast`: per budget with a monthly limit, the month-end projection.
pub async fn forecast(config: &Config, format: Format) -> anyhow::Result<u8> {
    let store = Store::connect_existing(&config.storage).await?;
    let list = crate::budget::forecasts(&store, config, Utc::now()).await?;
    store.close().await;
    let date = |t: i64, tz: Tz| {
        chrono::DateTime::<Utc>::from_timestamp(t, 0)
            .map(|t| t.with_timezone(&tz).format("%Y-%m-%d").to_string())
            .unwrap_or_default()
    };
    let crossing = |f: &crate::budget::BudgetForecast| match f.forecast.crosses_at {
        Some(t) if f.spent >= f.limit => format!("crossed (by {})", date(t, f.timezone)),
        Some(t) => date(t, f.timezone),
        None => "not this month".to_owned(),
    };
    match format {
        Format::Json => {
            let items: Vec<_> = list
                .iter()
                .map(|f| serde_json::json!({
                    "budget": f.budget, "month": f.month, "spent_usd": f.spent, "limit_usd": f.limit,
                    "daily_rate_usd": f.forecast.daily_rate, "projected_usd": f.forecast.projected,
                    "crosses_on": f.forecast.crosses_at.map(|t| date(t, f.timezone)),
                }))
                .collect();
            println!("{}", serde_json::to_string_pretty(&items)?);
        }
        Format::Csv => {
            println!("budget,month,spent_usd,limit_usd,daily_rate_usd,projected_usd,crosses_on");
            for f in &list {
                println!(
                    "{},{},{:.6},{:.6},{:.6},{:.6},{}",
                    csv_field(&f.budget),
                    f.month,
                    f.spent,
                    f.limit,
                    f.forecast.daily_rate,
                    f.forecast.projected,
                    f.forecast
                        .crosses_at
                        .map(|t| date(t, f.timezone))
                        .unwrap_or_default()
                );
            }
        }
        Format::Table => {
            println!("month-end forecast: month-to-date + median daily spend of the last 7 complete days x days left");
            if list.is_empty() {
                println!("no budget has a monthly_usd limit");
            }
            println!(
                "{:<20} {:<8} {:>11} {:>11} {:>10} {:>11}  limit reached",
                "budget", "month", "spent", "limit", "per day", "projected"
            );
            for f in &list {
                println!(
                    "{:<20} {:<8} {:>11.2} {:>11.2} {:>10.2} {:>11.2}  {}",
                    cut(&f.budget, 20),
                    f.month,
                    f.spent,
                    f.limit,
                    f.forecast.daily_rate,
                    f.forecast.projected,
                    crossing(f)
                );
            }
        }
    }
    Ok(exit::OK)
}

/// Why an estimate and the bill differ, as far as keywatch can tell.
fn likely_cause(d: &crate::store::ReconcileDay) -> String {
    let mut causes = Vec::new();
    for m in &d.unpriced_models {
        let m = crate::text::clean(m);
        causes.push(format!("no price for model {m} (add [prices.\"{m}\"])"));
    }
    for (t, usd) in &d.other_cost_types {
        let t = crate::text::clean(t);
        causes.push(format!("cost type keywatch does not see: {t} ${usd:.2}"));
    }
    if causes.is_empty() {
        causes.push(match d.billed_usd {
            Some(b) if d.estimated_usd > b => {
                "estimate above the bill: outdated prices or a contract discount".to_owned()
            }
            _ => "estimate below the bill: outdated prices, a contract-priced tier (Priority \
                  Tier) or a long-context band"
                .to_owned(),
        });
    }
    causes.join("; ")
}

/// `report --reconcile`: per source and closed UTC day, estimate against the provider's report.
pub async fn reconcile(
    config: &Config,
    since: Option<TimeArg>,
    last: Option<u32>,
    tolerance: f64,
    format: Format,
) -> anyhow::Result<u8> {
    anyhow::ensure!(
        tolerance.is_finite() && tolerance >= 0.0,
        "--tolerance must be a percentage, 0 or more"
    );
    let now = Utc::now();
    let today = now.timestamp().div_euclid(86_400) * 86_400;
    let from = match since {
        Some(s) => s.resolve(now).timestamp().div_euclid(86_400) * 86_400,
        None => {
            let n = last.unwrap_or(7);
            crate::report::check_last(crate::report::PeriodKind::Day, n)
                .map_err(anyhow::Error::msg)?;
            today - i64::from(n) * 86_400
        }
    };
    let store = Store::connect_existing(&config.storage).await?;
    let days = store
        .reconcile(config.poll.bucket_width.seconds(), from, today)
        .await?;
    store.close().await;
    let rows: Vec<(crate::store::ReconcileDay, Option<f64>, Option<f64>, bool)> = days
        .into_iter()
        .map(|d| {
            let diff = d.billed_usd.map(|b| d.estimated_usd - b);
            let pct = d
                .billed_usd
                .filter(|b| *b > 0.0)
                .map(|b| (d.estimated_usd - b) / b * 100.0);
            let flagged = match (d.billed_usd, pct) {
                (Some(_), Some(p)) => p.abs() > tolerance,
                (Some(b), None) => d.estimated_usd > 0.005 && b == 0.0,
                (None, _) => false,
            };
            (d, diff, pct, flagged)
        })
        .collect();
    let day = |t: i64| {
        crate::alerts::rfc3339(t)
            .get(..10)
            .unwrap_or_default()
            .to_owned()
    };
    match format {
        Format::Csv => {
            println!("source,day,estimated_usd,billed_usd,difference_usd,difference_pct,flagged,likely_cause,late_usd");
            for (d, diff, pct, flagged) in &rows {
                println!(
                    "{},{},{:.6},{},{},{},{},{},{}",
                    csv_field(&d.source),
                    day(d.day),
                    d.estimated_usd,
                    opt(d.billed_usd, 6),
                    opt(*diff, 6),
                    opt(*pct, 2),
                    flagged,
                    if *flagged {
                        csv_field(&likely_cause(d))
                    } else {
                        String::new()
                    },
                    opt(d.late_usd, 6)
                );
            }
        }
        Format::Json => {
            let items: Vec<_> = rows
                .iter()
                .map(|(d, diff, pct, flagged)| {
                    serde_json::json!({
                        "source": d.source, "day": day(d.day), "estimated_usd": d.estimated_usd,
                        "billed_usd": d.billed_usd, "difference_usd": diff, "difference_pct": pct,
                        "flagged": flagged, "likely_cause": flagged.then(|| likely_cause(d)),
                        "late_usd": d.late_usd,
                    })
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&items)?);
        }
        Format::Table => {
            println!("estimate vs the provider's billed figures per closed UTC day (tolerance {tolerance}%)");
            println!(
                "{:<18} {:<10} {:>11} {:>11} {:>10} {:>8} {:>9}",
                "source", "day", "estimated", "billed", "diff", "diff %", "late"
            );
            for (d, diff, pct, flagged) in &rows {
                println!(
                    "{:<18} {:<10} {:>11.2} {:>11} {:>10} {:>8} {:>9}{}",
                    cut(&d.source, 18),
                    day(d.day),
                    d.estimated_usd,
                    d.billed_usd
                        .map_or_else(|| "not yet".to_owned(), |b| format!("{b:.2}")),
                    opt(*diff, 2),
                    pct.map(|p| format!("{p:+.1}%")).unwrap_or_default(),
                    opt(d.late_usd, 2),
                    if *flagged {
                        format!("  FLAG: {}", likely_cause(d))
                    } else {
                        String::new()
                    }
                );
            }
        }
    }
    Ok(exit::OK)
}
