//! The Prometheus text format (0.0.4) from the OpenMetrics text prometheus-client
//! writes. Every Prometheus version reads 0.0.4, as do the agents and proxies that
//! do not speak OpenMetrics.

use std::collections::HashSet;

/// What `GET /metrics` answers in.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// In OpenMetrics a counter family `x` describes samples named `x_total`; in 0.0.4 the
/// `# HELP` and `# TYPE` lines name the samples themselves, or the scraper files them
/// as untyped, without their help. So counter families are renamed to their
/// samples' name. Lines 0.0.4 does not know (`# UNIT`, `# EOF`) are left out; the
/// rest (gauges, labels, values) is written alike in both.
pub(super) fn prometheus_text(openmetrics: &str) -> String {
    let counters: HashSet<&str> = openmetrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut text = String::with_capacity(openmetrics.len() + 12 * counters.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let counter = ["# HELP ", "# TYPE "].into_iter().find_map(|prefix| {
            let (name, rest) = line.strip_prefix(prefix)?.split_once(' ')?;
            counters.contains(name).then_some((prefix, name, rest))
        });
        match counter {
            Some((prefix, name, rest)) => {
                text.push_str(prefix);
                text.push_str(name);
                text.push_str("_total ");
                text.push_str(rest);
            }
            None => text.push_str(line),
        }
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::prometheus_text;

    #[test]
    fn counter_families_are_named_after_their_samples() {
        let openmetrics = "# HELP a_things Things.\n# TYPE a_things counter\na_things_total 3\n\
                           # HELP b_level A level.\n# TYPE b_level gauge\nb_level{x=\"y\"} 2\n\
                           # HELP c_seconds Time.\n# TYPE c_seconds counter\n# UNIT c_seconds seconds\n\
                           c_seconds_total{k=\"v\"} 1.5\n# EOF\n";
        assert_eq!(
            prometheus_text(openmetrics),
            "# HELP a_things_total Things.\n# TYPE a_things_total counter\na_things_total 3\n\
             # HELP b_level A level.\n# TYPE b_level gauge\nb_level{x=\"y\"} 2\n\
             # HELP c_seconds_total Time.\n# TYPE c_seconds_total counter\nc_seconds_total{k=\"v\"} 1.5\n"
        );
    }
}
