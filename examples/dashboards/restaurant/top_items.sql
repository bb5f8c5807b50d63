-- Top 5 items ordered in the last hour, by name.
SELECT i.name AS item, sum(oi.quantity) AS quantity, count(*) AS orders
FROM order_items oi
JOIN items i ON i.item_id = oi.item_id
WHERE oi.restaurant_id = $1
  AND oi.event_time >= now() - interval '1 hour'
GROUP BY i.name
ORDER BY quantity DESC, item
LIMIT 5
