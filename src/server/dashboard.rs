//! The restaurant dashboard page (`sluice demo`, `sluice serve --dashboard`):
//! static HTML and a little JavaScript that runs the portal's SQL through
//! `POST /query` every 2 seconds. The SQL is the files under
//! `examples/dashboards/restaurant/`, compiled in, so the page, the docs and
//! the benchmark run the same statements.

/// The page, with `/*QUERIES*/null` where the statements go.
const TEMPLATE: &str = include_str!("dashboard.html");

/// The panels' statements by name; each takes the restaurant as `$1`.
pub const RESTAURANT_QUERIES: [(&str, &str); 7] = [
    (
        "funnel",
        include_str!("../../examples/dashboards/restaurant/funnel.sql"),
    ),
    (
        "couriers_waiting",
        include_str!("../../examples/dashboards/restaurant/couriers_waiting.sql"),
    ),
    (
        "latest_ratings",
        include_str!("../../examples/dashboards/restaurant/latest_ratings.sql"),
    ),
    (
        "top_items",
        include_str!("../../examples/dashboards/restaurant/top_items.sql"),
    ),
    (
        "prep_time",
        include_str!("../../examples/dashboards/restaurant/prep_time.sql"),
    ),
    (
        "sales_today",
        include_str!("../../examples/dashboards/restaurant/sales_today.sql"),
    ),
    (
        "daily_sales",
        include_str!("../../examples/dashboards/restaurant/daily_sales.sql"),
    ),
];

/// The page's own statements (no parameter): the busiest restaurants of
/// the last hour, for its picker, and the age of the newest order event.
const PAGE_QUERIES: [(&str, &str); 2] = [
    (
        "busiest",
        "SELECT o.restaurant_id, r.name, count(*) AS orders \
         FROM orders o JOIN restaurants r ON r.restaurant_id = o.restaurant_id \
         WHERE o.event_time >= now() - interval '1 hour' \
         GROUP BY o.restaurant_id, r.name ORDER BY orders DESC, o.restaurant_id LIMIT 10",
    ),
    (
        "freshness",
        "SELECT round(extract(epoch FROM now() - max(event_time)), 1) AS age_sec \
         FROM orders WHERE event_time >= now() - interval '1 day'",
    ),
];

/// The page's HTML.
pub fn page() -> String {
    let queries: serde_json::Map<String, serde_json::Value> = RESTAURANT_QUERIES
        .iter()
        .chain(PAGE_QUERIES.iter())
        .map(|(name, sql)| (name.to_string(), serde_json::Value::String(sql.to_string())))
        .collect();
    // `</` cannot end the script early: JSON escapes it as `<\/`.
    let json = serde_json::Value::Object(queries)
        .to_string()
        .replace("</", "<\\/");
    TEMPLATE.replace("/*QUERIES*/null", &json)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_page_carries_every_panel_statement() {
        let page = super::page();
        assert!(!page.contains("/*QUERIES*/"));
        for (name, _) in super::RESTAURANT_QUERIES {
            assert!(page.contains(&format!("\"{name}\":")), "{name}");
        }
    }
}
