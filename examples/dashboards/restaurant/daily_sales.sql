-- Daily sales over the last 180 days, by the day the order was placed. An
-- order whose NEW message came after a later status has no created_at (the
-- late message is dropped whole, see docs/dashboards.md): left out.
SELECT date_trunc('day', created_at) AS day, sum(subtotal) AS sales, count(*) AS orders
FROM orders
WHERE restaurant_id = $1
  AND status = 'DELIVERED'
  AND created_at IS NOT NULL
  AND event_time >= now() - interval '180 days'
GROUP BY 1
ORDER BY 1
