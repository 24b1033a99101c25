#!/usr/bin/env bash
# A walk-through of the API against a running server (`npm start`), with curl and jq.
# Every step checks its answer and stops the script, loudly, at the first that fails.
# It can run any number of times: it logs in when the user exists, and replaces the
# device and rule a previous run left.
set -euo pipefail

URL="${URL:-http://localhost:8080}"
USERNAME="${USERNAME:-alice}"
PASSWORD="${PASSWORD:-correct horse battery}"

# curl for JSON: prints the answer; an error answer (4xx, 5xx) goes to stderr and fails (exit 22), so `set -e` stops there.
api() {
  local answer status=0
  answer=$(curl -sS --fail-with-body -H 'content-type: application/json' "$@") || status=$?
  if [ "$status" -ne 0 ]; then printf '%s\n' "$answer" >&2; return "$status"; fi
  printf '%s\n' "$answer"
}
step() { printf '\n== %s\n' "$*"; }

step "log in, or register when the user does not exist yet (the first user is admin)"
CREDENTIALS=$(jq -nc --arg u "$USERNAME" --arg p "$PASSWORD" '{username: $u, password: $p}')
SESSION=$(api "$URL/api/auth/login" -d "$CREDENTIALS" 2>/dev/null) ||
  SESSION=$(api "$URL/api/auth/register" -d "$(jq -c --arg e "$USERNAME@example.com" '. + {email: $e}' <<<"$CREDENTIALS")")
TOKEN=$(jq -er .data.token <<<"$SESSION")
ROLE=$(jq -er .data.user.role <<<"$SESSION")
AUTH=(-H "authorization: Bearer $TOKEN")
echo "logged in as $USERNAME ($ROLE)"

step "remove what a previous run left: devices named boiler, the rule 'boiler overheat'"
for id in $(api "$URL/api/devices?q=boiler&limit=500" "${AUTH[@]}" | jq -r '.data[] | select(.name == "boiler") | .id'); do
  api -X DELETE "$URL/api/devices/$id" "${AUTH[@]}" | jq -c .data
done
for id in $(api "$URL/api/automation/rules?limit=500" "${AUTH[@]}" | jq -r '.data[] | select(.name == "boiler overheat") | .id'); do
  api -X DELETE "$URL/api/automation/rules/$id" "${AUTH[@]}" | jq -c .data
done

step "register a boiler: an alert above 80 °C, its water pressure in bar (0–6 is plausible)"
MAC=$(printf '02:00:00:%02X:%02X:%02X' $((RANDOM % 256)) $((RANDOM % 256)) $((RANDOM % 256)))
DEVICE_JSON=$(api "$URL/api/devices" "${AUTH[@]}" -d "{\"name\": \"boiler\", \"type\": \"boiler\", \"mac_address\": \"$MAC\",
  \"configuration\": {\"thresholds\": {\"temperature\": {\"max\": 80, \"severity\": \"critical\"}},
                      \"ranges\": {\"pressure\": {\"min\": 0, \"max\": 6}}}}")
DEVICE=$(jq -er .data.id <<<"$DEVICE_JSON")
DEVICE_TOKEN=$(jq -er .data.credentials.auth_token <<<"$DEVICE_JSON")   # shown only here
DEV=(-H "x-device-token: $DEVICE_TOKEN")
echo "device $DEVICE"

step "the device sends readings; a retry with the same Idempotency-Key is stored once"
READINGS='{"sensor_readings": [{"sensor_type": "temperature", "value": 72.5, "unit": "°C"},
                               {"sensor_type": "pressure", "value": 1.9, "unit": "bar"}]}'
FIRST=$(api "$URL/api/devices/$DEVICE/data" "${DEV[@]}" -H 'idempotency-key: boot-1-seq-1' -d "$READINGS")
AGAIN=$(api "$URL/api/devices/$DEVICE/data" "${DEV[@]}" -H 'idempotency-key: boot-1-seq-1' -d "$READINGS")
jq -e '.data.accepted == 2' <<<"$FIRST"
jq -e --argjson first "$FIRST" '.data.position == $first.data.position' <<<"$AGAIN" >/dev/null

step "raw readings: both plausible (quality 100), stored once"
api "$URL/api/devices/$DEVICE/data" "${AUTH[@]}" |
  jq -e '(.data | length) == 2 and all(.data[]; .quality_score == 100)' >/dev/null
api "$URL/api/devices/$DEVICE/data" "${AUTH[@]}" | jq -c '.data[] | {sensor_type, value, unit, quality_score}'

step "too hot: 85 °C raises a critical alert"
api "$URL/api/devices/$DEVICE/data" "${DEV[@]}" -d '{"sensor_readings": {"temperature": 85}}' >/dev/null
api "$URL/api/alerts?device_id=$DEVICE" "${AUTH[@]}" |
  jq -e '.data[0] | select(.status == "active" and .severity == "critical") | {kind, sensor_type, message, last_value}'

step "hourly aggregates and analytics"
api "$URL/api/devices/$DEVICE/data?interval=hour" "${AUTH[@]}" | jq -c '.data[] | {sensor_type, bucket_start, count, avg, max}'
api "$URL/api/analytics?device_id=$DEVICE" "${AUTH[@]}" | jq -e -c '.data.readings | {total, sensors: [.by_sensor[].sensor_type]}'

step "a command: queued by the owner, fetched by the device, answered with its result"
COMMAND=$(api "$URL/api/devices/$DEVICE/commands" "${AUTH[@]}" \
  -d '{"command_type": "set_target", "parameters": {"celsius": 65}, "priority": "high"}' | jq -er .data.id)
api "$URL/api/devices/$DEVICE/commands/pending" "${DEV[@]}" | jq -e --arg id "$COMMAND" '.data[] | select(.id == $id) | {id, command_type, status}'
api "$URL/api/devices/$DEVICE/commands/$COMMAND/result" "${DEV[@]}" \
  -d '{"status": "executed", "response": {"celsius": 65}}' >/dev/null
api "$URL/api/commands/$COMMAND" "${AUTH[@]}" | jq -e '.data | select(.status == "executed") | {status, response}'

step "a rule: above 80 °C for a minute, turn the burner off and raise an alert"
api "$URL/api/automation/rules" "${AUTH[@]}" -d "{\"name\": \"boiler overheat\",
  \"trigger_conditions\": {\"all\": [{\"type\": \"reading\", \"device_id\": \"$DEVICE\", \"sensor_type\": \"temperature\",
                                      \"operator\": \">\", \"value\": 80, \"for_seconds\": 60}]},
  \"actions\": [{\"type\": \"command\", \"device_id\": \"$DEVICE\", \"command_type\": \"burner_off\"},
               {\"type\": \"alert\", \"severity\": \"critical\", \"message\": \"boiler overheating\"}]}" |
  jq -e '.data | select(.is_enabled) | {id, name, is_enabled}'

step "audit: the device's history, and (admins) the hash chain"
api "$URL/api/devices/$DEVICE/history" "${AUTH[@]}" | jq -e -c '[.data[].type] | select(index("readings.recorded"))'
if [ "$ROLE" = admin ]; then
  api "$URL/api/events/verify" "${AUTH[@]}" | jq -e '.data | select(.ok) | {ok, checked}'
fi

printf '\nwalk-through complete\n'
