-- Couriers at the restaurant now: arrived, the order not yet picked up.
SELECT count(*) AS couriers_waiting, min(courier_arrived_at) AS waiting_since
FROM orders
WHERE restaurant_id = $1
  AND courier_arrived_at IS NOT NULL
  AND status IN ('CONFIRMED', 'IN_KITCHEN', 'READY_FOR_PICKUP')
  AND event_time >= now() - interval '1 day'
