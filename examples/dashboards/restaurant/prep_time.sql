-- Average food preparation time over the last hour: READY_FOR_PICKUP minus
-- CONFIRMED of the same order, two messages merged by the partial upsert.
SELECT round(avg(extract(epoch FROM ready_at - confirmed_at)) / 60, 1) AS avg_prep_minutes,
       count(*) AS orders
FROM orders
WHERE restaurant_id = $1
  AND ready_at >= now() - interval '1 hour'
  AND confirmed_at IS NOT NULL
  AND event_time >= now() - interval '1 hour'
