#!/usr/bin/env bash
# Entrypoint of the Spark image. Spark on Kubernetes starts executor pods from this image with
# the argument `executor` and describes them in SPARK_* variables; in cluster mode (the
# spark-operator) the driver pod gets `driver` and spark-submit's arguments. Anything else is
# run as given (the chart's driver Deployment runs `marketpipe features`).
set -euo pipefail

case "${1:-}" in
    driver)
        # Cluster mode (the spark-operator): the driver pod runs spark-submit in client mode.
        shift
        exec "$SPARK_HOME/bin/spark-submit" \
            --conf "spark.driver.bindAddress=${SPARK_DRIVER_BIND_ADDRESS:?}" \
            --conf "spark.executorEnv.SPARK_DRIVER_POD_IP=${SPARK_DRIVER_BIND_ADDRESS:?}" \
            --deploy-mode client "$@"
        ;;
    executor)
        shift
        ;;
    *)
        exec "$@"
        ;;
esac

# The driver hands JVM options to executors as SPARK_JAVA_OPT_0, SPARK_JAVA_OPT_1, ...
java_opts=()
for i in $(seq 0 255); do
    var="SPARK_JAVA_OPT_$i"
    [ -n "${!var+x}" ] || break
    java_opts+=("${!var}")
done

classpath="${SPARK_CONF_DIR:-$SPARK_HOME/conf}:$SPARK_HOME/jars/*"
if [ -n "${SPARK_EXTRA_CLASSPATH:-}" ]; then
    classpath="$classpath:$SPARK_EXTRA_CLASSPATH"
fi

exec java "${java_opts[@]}" \
    -Xms"${SPARK_EXECUTOR_MEMORY:?}" -Xmx"${SPARK_EXECUTOR_MEMORY:?}" \
    -cp "$classpath" \
    org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend \
    --driver-url "${SPARK_DRIVER_URL:?}" \
    --executor-id "${SPARK_EXECUTOR_ID:?}" \
    --cores "${SPARK_EXECUTOR_CORES:?}" \
    --app-id "${SPARK_APPLICATION_ID:?}" \
    --hostname "${SPARK_EXECUTOR_POD_IP:?}" \
    --resourceProfileId "${SPARK_RESOURCE_PROFILE_ID:-0}" \
    --podName "${SPARK_EXECUTOR_POD_NAME:?}"
