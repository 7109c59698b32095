#!/usr/bin/env bash
# Renders the Kubernetes manifests of a FleetLearn fleet into DIR, with fresh development certificates and keys:
#   DIR/podman-secrets/*.yaml  the same Secrets in the form Podman 4.3's kube play needs (see secret() below)
#   DIR/secrets/*.yaml  one Secret each: the broker's TLS files, the aggregator's (client certificate and plan-signing
#                       key), one per vehicle (its certificate, CN = vehicle id, and the aggregator's public key)
#   DIR/broker, DIR/aggregator, DIR/agents/car-N   the same files as folders, for compose.yaml's bind mounts
#   DIR/fleet.yaml      Services broker and aggregator; Deployments broker (Mosquitto, broker-config/) and aggregator
#                       (with its PersistentVolumeClaim); one single-replica Deployment + PersistentVolumeClaim per agent
# Every secret volume says optional: false (Podman 4.3's kube play dereferences a missing `optional`).
# Apply on a cluster: kubectl apply -f DIR/secrets/ -f DIR/fleet.yaml (the images must be in a registry the cluster
# pulls from; here they are built by containers/build-images.sh). Locally: containers/kube/test.sh plays them with
# `podman kube play`.
#
# usage: containers/kube/render.sh --out DIR [--agents N] [--host-port P (aggregator HTTP on 127.0.0.1, default 18080)]
#   [--broker-host NAME (default broker, the Service; Podman names the broker's pod broker-pod-0)] [--rounds R] [--model SPEC] [--secagg off|full|plus] [--dp off|central|distributed]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
out="" broker_host=broker host_port=18080 agents=4 rounds=1 model=784-32-10 secagg=plus dp=distributed
die() { echo "render.sh: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=${2:?--out needs a folder}; shift 2 ;;
    --agents) agents=${2:?--agents needs a number}; shift 2 ;;
    --broker-host) broker_host=${2:?--broker-host needs a name}; shift 2 ;;
    --host-port) host_port=${2:?--host-port needs a port}; shift 2 ;;
    --rounds) rounds=${2:?--rounds needs a number}; shift 2 ;;
    --model) model=${2:?--model needs layer widths}; shift 2 ;;
    --secagg) secagg=${2:?--secagg needs off, full or plus}; shift 2 ;;
    --dp) dp=${2:?--dp needs off, central or distributed}; shift 2 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) die "unknown argument '$1' (--help lists the options)" ;;
  esac
done
[ -n "$out" ] || die "--out DIR is required"
[[ "$agents" =~ ^[0-9]+$ ]] && [ "$agents" -ge 1 ] || die "--agents '$agents' is not a positive number"
[[ "$rounds" =~ ^[0-9]+$ ]] && [ "$rounds" -ge 1 ] || die "--rounds '$rounds' is not a positive number"
mkdir -p "$out/secrets" "$out/podman-secrets"
certs="$out/certs"
vehicles=(); for ((i = 0; i < agents; i++)); do vehicles+=("car-$i"); done
bash "$repo/broker-config/make-dev-ca.sh" "$certs" "${vehicles[@]}" >/dev/null 2>&1 || die "broker-config/make-dev-ca.sh failed"
[ -f "$out/aggregator-signing.pem" ] || openssl ecparam -name prime256v1 -genkey -noout 2>/dev/null | openssl pkcs8 -topk8 -nocrypt -out "$out/aggregator-signing.pem"
openssl ec -in "$out/aggregator-signing.pem" -pubout -out "$out/aggregator-signing.pub.pem" 2>/dev/null

secret() { # name key=file ...
  # secrets/NAME.yaml is the Kubernetes Secret (data: base64). Podman 4.3's kube play writes a secret volume's `data`
  # values into the files without decoding them (and ignores stringData), so podman-secrets/NAME.yaml carries the same
  # Secret with the values as text, for `podman secret create` (containers/kube/test.sh).
  local name=$1; shift
  local head
  head=$(printf 'apiVersion: v1\nkind: Secret\nmetadata:\n  name: %s\n  labels:\n    app.kubernetes.io/part-of: fleetlearn\ntype: Opaque\ndata:' "$name")
  {
    echo "$head"
    for kv in "$@"; do printf '  %s: %s\n' "${kv%%=*}" "$(base64 -w0 < "${kv#*=}")"; done
  } > "$out/secrets/$name.yaml"
  {
    echo "# For Podman 4.3 only (values not base64-encoded); Kubernetes takes ../secrets/$name.yaml"
    echo "$head"
    for kv in "$@"; do printf '  %s: |\n' "${kv%%=*}"; sed 's/^/    /' "${kv#*=}"; done
  } > "$out/podman-secrets/$name.yaml"
}
secret fleetlearn-broker-tls ca.crt="$certs/ca.crt" ca.crl="$certs/ca.crl" broker.crt="$certs/broker.crt" broker.key="$certs/broker.key"
secret fleetlearn-aggregator ca.crt="$certs/ca.crt" aggregator.crt="$certs/aggregator.crt" aggregator.key="$certs/aggregator.key" \
  aggregator-signing.pem="$out/aggregator-signing.pem"
for v in "${vehicles[@]}"; do
  secret "fleetlearn-$v" ca.crt="$certs/ca.crt" vehicle.crt="$certs/$v.crt" vehicle.key="$certs/$v.key" \
    aggregator-signing.pub.pem="$out/aggregator-signing.pub.pem"
done

# The same files as folders, owned by the users the images run as (aggregator 991, agents 990): what compose.yaml
# bind-mounts (a bind mount keeps the host's owner and mode, and the keys are 0600).
mkdir -p "$out/broker" "$out/aggregator"
cp "$certs/"{ca.crt,ca.crl,broker.crt,broker.key} "$out/broker/"
cp "$certs/"{ca.crt,aggregator.crt,aggregator.key} "$out/aggregator-signing.pem" "$out/aggregator/"
chown -R 991:991 "$out/aggregator" 2>/dev/null || true
for v in "${vehicles[@]}"; do
  mkdir -p "$out/agents/$v"
  cp "$certs/ca.crt" "$out/aggregator-signing.pub.pem" "$out/agents/$v/"
  cp "$certs/$v.crt" "$out/agents/$v/vehicle.crt"; cp "$certs/$v.key" "$out/agents/$v/vehicle.key"
  chown -R 990:990 "$out/agents/$v" 2>/dev/null || true
done

min=$(( (3 * agents + 3) / 4 ))
{
cat <<YAML
# FleetLearn fleet: Mosquitto broker, aggregator, $agents agents. Rendered by containers/kube/render.sh.
apiVersion: v1
kind: Service
metadata:
  name: broker
  labels: {app.kubernetes.io/part-of: fleetlearn}
spec:
  selector: {app: fleetlearn-broker}
  ports: [{name: mqtts, port: 8883, targetPort: 8883}]
---
apiVersion: v1
kind: Service
metadata:
  name: aggregator
  labels: {app.kubernetes.io/part-of: fleetlearn}
spec:
  selector: {app: fleetlearn-aggregator}
  ports: [{name: http, port: 8080, targetPort: 8080}]
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: broker
  labels: {app.kubernetes.io/part-of: fleetlearn}
spec:
  replicas: 1
  selector: {matchLabels: {app: fleetlearn-broker}}
  template:
    metadata:
      labels: {app: fleetlearn-broker}
    spec:
      hostname: broker
      containers:
        - name: mosquitto
          image: localhost/fleetlearn-broker:dev
          volumeMounts:
            - {name: tls, mountPath: /run/fleetlearn/certs, readOnly: true}
      volumes:
        - name: tls
          secret: {secretName: fleetlearn-broker-tls, optional: false}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: fleetlearn-aggregator-state
  labels: {app.kubernetes.io/part-of: fleetlearn}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: aggregator
  labels: {app.kubernetes.io/part-of: fleetlearn}
spec:
  replicas: 1
  strategy: {type: Recreate}
  selector: {matchLabels: {app: fleetlearn-aggregator}}
  template:
    metadata:
      labels: {app: fleetlearn-aggregator}
    spec:
      hostname: aggregator
      securityContext: {runAsUser: 991, runAsGroup: 991, fsGroup: 991}
      containers:
        - name: aggregator
          image: localhost/fleetlearn-aggregator:dev
          ports: [{containerPort: 8080, name: http, hostPort: $host_port, hostIP: 127.0.0.1}]
          env:
            - {name: Mqtt__Host, value: $broker_host}
            - {name: Mqtt__Port, value: "8883"}
            - {name: Mqtt__UseTls, value: "true"}
            - {name: Mqtt__TlsServerName, value: localhost}
            - {name: Mqtt__ClientId, value: aggregator}
            - {name: Mqtt__CaFile, value: /run/fleetlearn/ca.crt}
            - {name: Mqtt__CertFile, value: /run/fleetlearn/aggregator.crt}
            - {name: Mqtt__KeyFile, value: /run/fleetlearn/aggregator.key}
            - {name: Aggregator__SigningKeyPath, value: /run/fleetlearn/aggregator-signing.pem}
            - {name: Aggregator__DeviceCaFile, value: /run/fleetlearn/ca.crt}
            - {name: Aggregator__Model, value: "$model"}
            - {name: Aggregator__Rounds, value: "$rounds"}
            - {name: Aggregator__CohortSize, value: "$agents"}
            - {name: Aggregator__MinParticipants, value: "$min"}
            - {name: Aggregator__SecureAggregation, value: "$secagg"}
            - {name: Aggregator__Privacy, value: "$dp"}
            - {name: Aggregator__ClipNorm, value: "1"}
            - {name: Aggregator__LearningRate, value: "0.1"}
            - {name: Aggregator__PhaseTimeout, value: "00:01:00"}
            - {name: Aggregator__HttpPort, value: "8080"}
            - {name: Aggregator__HttpHost, value: "*"}
          readinessProbe:
            httpGet: {path: /healthz, port: 8080}
          volumeMounts:
            - {name: state, mountPath: /var/lib/fleetlearn-aggregator}
            - {name: keys, mountPath: /run/fleetlearn, readOnly: true}
      volumes:
        - name: state
          persistentVolumeClaim: {claimName: fleetlearn-aggregator-state}
        - name: keys
          secret: {secretName: fleetlearn-aggregator, defaultMode: 0440, optional: false}
YAML
for ((i = 0; i < agents; i++)); do
  v=car-$i
  cat <<YAML
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: fleetlearn-$v-state
  labels: {app.kubernetes.io/part-of: fleetlearn}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: agent-$v
  labels: {app.kubernetes.io/part-of: fleetlearn, fleetlearn/role: agent}
spec:
  replicas: 1
  strategy: {type: Recreate}
  selector: {matchLabels: {app: fleetlearn-agent, fleetlearn/vehicle: $v}}
  template:
    metadata:
      labels: {app: fleetlearn-agent, fleetlearn/vehicle: $v}
    spec:
      securityContext: {runAsUser: 990, runAsGroup: 990, fsGroup: 990}
      containers:
        - name: agent
          image: localhost/fleetlearn-agent:dev
          env:
            - {name: Agent__VehicleId, value: $v}
            - {name: Agent__PinnedModelSpec, value: "$model"}
            - {name: Agent__AggregatorPublicKey, value: /etc/fleetlearn/certs/aggregator-signing.pub.pem}
            - {name: Agent__Seed, value: "$((1000 + i))"}
            - {name: VehicleData__Vehicles, value: "$agents"}
            - {name: VehicleData__Index, value: "$i"}
            - {name: Mqtt__Host, value: $broker_host}
            - {name: Mqtt__Port, value: "8883"}
            - {name: Mqtt__TlsServerName, value: localhost}
          resources:
            limits: {memory: 1Gi}
          volumeMounts:
            - {name: state, mountPath: /var/lib/fleetlearn-agent}
            - {name: tls, mountPath: /etc/fleetlearn/certs, readOnly: true}
      volumes:
        - name: state
          persistentVolumeClaim: {claimName: fleetlearn-$v-state}
        - name: tls
          secret: {secretName: fleetlearn-$v, defaultMode: 0440, optional: false}
YAML
done
} > "$out/fleet.yaml"
echo "render.sh: $out/fleet.yaml and $(ls "$out/secrets" | wc -l) secrets in $out/secrets ($agents agents, $rounds rounds)" >&2
