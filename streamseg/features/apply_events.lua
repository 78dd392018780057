-- Apply a batch of one customer's events to its feature state, atomically and
-- idempotently. Runs inside Redis (one EVALSHA per customer, all customers of a
-- batch pipelined in one round trip).
--
-- KEYS[1]  hash  <prefix>:{<customer>}:f   feature accumulators (+ membership fields), and
--                                          active_day: the UTC day (floor(ts / DAY)) of the
--                                          newest "a:<day>" member this script counted
-- KEYS[2]  zset  <prefix>:{<customer>}:e   seen event ids ("e:<id>"), scored by event
--                                          time (ms), sessions ("s:<id>"), by their
--                                          earliest event time + 1 day, purchase
--                                          days ("p:<day>") and active days ("a:<day>",
--                                          a UTC day with any event), by the day's end
-- ARGV[1]  JSON array of compact events:
--            ["c", event_id, ts_ms, type, session_id, category|null]
--            ["t", event_id, ts_ms, amount, discount, items, refund(0|1), [categories]]
-- ARGV[2]  dedup horizon (ms of event time): older events are refused as late
-- ARGV[3]  TTL of both keys (seconds, wall clock)
-- ARGV[4]  half-life of the decayed counters (ms of event time)
--
-- Returns two strings: one status character per event ("1" applied,
-- "0" duplicate, "L" late), and the state as "field<TAB>value" lines.
--
-- Decayed counters are stored referenced to last_ts (the newest event time):
-- value(t) = sum_i w_i * 2^(-(t - t_i)/halflife). An event older than last_ts
-- adds its already-decayed weight, so the result does not depend on arrival
-- order.

local fkey, ekey = KEYS[1], KEYS[2]
local events = cjson.decode(ARGV[1])
local horizon = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
local halflife = tonumber(ARGV[4])
local DAY = 86400000

local DECAYED = {"d_events", "d_orders", "d_spend", "d_sessions", "d_page_views",
                 "d_product_views", "d_cart_adds", "d_email_opens", "d_email_clicks"}
local CLICK_COUNTER = {
  page_view = "n_page_views", product_view = "n_product_views", search = "n_searches",
  add_to_cart = "n_cart_adds", remove_from_cart = "n_cart_removes",
  checkout_start = "n_checkouts", email_open = "n_email_opens",
  email_click = "n_email_clicks", login = "n_logins", logout = "n_logouts",
  wishlist_add = "n_wishlist_adds", review = "n_reviews"}
local CLICK_DECAYED = {
  page_view = "d_page_views", product_view = "d_product_views",
  add_to_cart = "d_cart_adds", email_open = "d_email_opens", email_click = "d_email_clicks"}

-- text: each field's stored text, reused for the reply so only changed numbers
-- are formatted again (string.format is most of a call's cost)
local st, dirty, text = {}, {}, {}
local raw = redis.call("HGETALL", fkey)
for i = 1, #raw, 2 do
  local k, v = raw[i], raw[i + 1]
  local n = tonumber(v)
  if n == nil then st[k] = v else st[k] = n end
  text[k] = v
end

-- scores of the session and purchase-day members this call read or wrote: a
-- batch's events mostly share them, so each is read from the zset once
local scores = {}
local function score(member)
  local s = scores[member]
  if s == nil then
    s = redis.call("ZSCORE", ekey, member)
    s = s and tonumber(s) or false
    scores[member] = s
  end
  return s
end
local function put(member, s) redis.call("ZADD", ekey, s, member); scores[member] = s end

local function get(k) return st[k] or 0 end
local function set(k, v) st[k] = v; dirty[k] = true end
local function add(k, v) set(k, get(k) + v) end
local function weight(ts, ref) if ts >= ref then return 1.0 end return 2 ^ (-(ref - ts) / halflife) end

local function add_category(cat)
  if cat == nil or cat == cjson.null or cat == "" then return end
  local k = "c:" .. cat
  add(k, 1)
  add("cat_total", 1)
  if st[k] > get("cat_top") then set("cat_top", st[k]) end
end

local function advance_clock(ts)
  local last = st.last_ts
  if last == nil then
    set("first_ts", ts); set("last_ts", ts)
    return
  end
  if ts > last then
    local f = 2 ^ (-(ts - last) / halflife)
    for _, k in ipairs(DECAYED) do if st[k] then set(k, st[k] * f) end end
    set("last_ts", ts)
  end
  if ts < get("first_ts") then set("first_ts", ts) end
end

local function apply_click(ev, ts, w)
  local typ, sid = ev[4], ev[5]
  local c = CLICK_COUNTER[typ]
  if c then add(c, 1) end
  local d = CLICK_DECAYED[typ]
  if d then add(d, w) end
  if typ == "product_view" or typ == "add_to_cart" then add_category(ev[6]) end
  -- a session counts once, weighted by its earliest event time; it is scored a day
  -- after that time, so it is forgotten only a day after its start fell behind the
  -- horizon: a session's later events can still be on time when its first is not,
  -- and must not count it a second time (sessions last less than a day)
  local smember = "s:" .. sid
  local seen = score(smember)
  if not seen then
    add("n_sessions", 1); add("d_sessions", w)
    put(smember, ts + DAY)
  elseif ts < seen - DAY then
    add("d_sessions", w - weight(seen - DAY, st.last_ts))
    put(smember, ts + DAY)
  end
end

-- customer value (streamseg/value): distinct UTC days of a kind, counted in `field`, each
-- remembered as a "<prefix><day>" member. A day's member is scored by the day's end, so
-- the dedup trim keeps it while any event of that day can still be accepted.
local function count_day(prefix, field, day)
  local member = prefix .. string.format("%d", day)
  if not score(member) then
    add(field, 1)
    put(member, (day + 1) * DAY - 1)
  end
end

-- distinct purchase days and the first day's spend
local function count_purchase_day(ts, amount)
  local day = math.floor(ts / DAY)
  count_day("p:", "n_purchase_days", day)
  local first = st.first_purchase_ts
  local first_day = first and math.floor(first / DAY)
  if first_day == nil or day < first_day then set("first_day_amount", amount)
  elseif day == first_day then add("first_day_amount", amount) end
end

-- distinct active days (UTC days with any event: a visit, an order or a refund); the
-- first and last are those of first_ts and last_ts. Most events fall on the newest active
-- day, already counted: active_day remembers it, so they skip the zset. Exact: its member
-- is scored at that day's end, so the dedup trim (below last_ts - horizon) removes it only
-- once any event of that day is refused as late; a state written before the field existed
-- takes the slow path once.
local function count_active_day(ts)
  local day = math.floor(ts / DAY)
  local newest = st.active_day
  if newest == day then return end
  count_day("a:", "n_active_days", day)
  if newest == nil or day > newest then set("active_day", day) end
end

local function apply_transaction(ev, ts, w)
  local amount, discount, items, refund = ev[4], ev[5], ev[6], ev[7]
  if refund == 1 then
    add("n_refunds", 1); add("refund_amount", amount); add("d_spend", -amount * w)
    return
  end
  add("n_orders", 1); add("sum_amount", amount); add("sum_discount", discount)
  add("sum_items", items); add("d_orders", w); add("d_spend", amount * w)
  count_purchase_day(ts, amount)
  if ts > get("last_purchase_ts") then set("last_purchase_ts", ts) end
  if st.first_purchase_ts == nil or ts < st.first_purchase_ts then set("first_purchase_ts", ts) end
  for _, cat in ipairs(ev[8]) do add_category(cat) end
end

local out = {}
for i, ev in ipairs(events) do
  local ts = ev[3]
  local member = "e:" .. ev[2]
  if st.last_ts ~= nil and ts < st.last_ts - horizon then
    out[i] = "L"
  elseif redis.call("ZADD", ekey, "NX", ts, member) == 0 then  -- seen: a duplicate
    out[i] = "0"
  else
    advance_clock(ts)
    local w = weight(ts, st.last_ts)
    add("n_events", 1); add("d_events", w)
    count_active_day(ts)
    if ev[1] == "t" then apply_transaction(ev, ts, w) else apply_click(ev, ts, w) end
    out[i] = "1"
  end
end

local flat = {}
for k, _ in pairs(dirty) do
  flat[#flat + 1] = k
  local v = st[k]
  if type(v) == "number" then v = string.format("%.17g", v) end
  flat[#flat + 1] = v
  text[k] = v
end
if #flat > 0 then
  redis.call("HSET", fkey, unpack(flat))
  redis.call("ZREMRANGEBYSCORE", ekey, "-inf", "(" .. string.format("%.17g", st.last_ts - horizon))
end
if st.last_ts ~= nil then
  redis.call("EXPIRE", fkey, ttl)
  redis.call("EXPIRE", ekey, ttl)
end

-- Reply: two bulk strings, cheap to parse client-side. Per-category counts stay
-- in Redis (only cat_top/cat_total feed features).
local parts = {}
for k, v in pairs(text) do
  if string.sub(k, 1, 2) ~= "c:" then parts[#parts + 1] = k .. "\t" .. v end
end
return {table.concat(out), table.concat(parts, "\n")}
