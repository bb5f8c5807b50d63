-- The active order funnel: orders in each open status right now.
SELECT status, count(*) AS orders
FROM orders
WHERE restaurant_id = $1
  AND status IN ('NEW', 'CONFIRMED', 'IN_KITCHEN', 'READY_FOR_PICKUP')
  AND event_time >= now() - interval '1 day'
GROUP BY status
ORDER BY CASE status WHEN 'NEW' THEN 1 WHEN 'CONFIRMED' THEN 2
                     WHEN 'IN_KITCHEN' THEN 3 ELSE 4 END
