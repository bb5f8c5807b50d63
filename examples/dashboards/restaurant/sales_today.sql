-- Sales and completed orders so far today (UTC days).
SELECT coalesce(sum(subtotal), 0) AS sales, count(*) AS completed_orders
FROM orders
WHERE restaurant_id = $1
  AND status = 'DELIVERED'
  AND delivered_at >= date_trunc('day', now())
  AND event_time >= date_trunc('day', now())
