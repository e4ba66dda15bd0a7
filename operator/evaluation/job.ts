// The evaluation Job of a round: the operator's own image running `evaluate` (onnxruntime-node),
// with the resources of spec.evaluation.runner so large packs can use a GPU node. Pure.
// Its pod settings are its own: only the scaffolding in kube/objects.ts is shared with the trainer.
import type { ContinualClipRunSpec } from "../api/continual-clip-run.ts";
import {
  CONTAINER_SECURITY_CONTEXT,
  CONTAINERS,
  POD_SECURITY_CONTEXT,
  containerResources,
  evalJobName,
  ownerReference,
  podEnv,
  podFailurePolicy,
  roundLabels,
  serviceAccount,
  type RunRef,
} from "../kube/objects.ts";
import { evaluateArgs, type RoundToEvaluate } from "./request.ts";

const BACKOFF_LIMIT = 2;
const ACTIVE_DEADLINE_SECONDS = 6 * 3600;
const FINISHED_TTL_SECONDS = 7 * 24 * 3600;
// Without requests the scheduler packs evaluators onto full nodes and they are evicted first:
// onnxruntime on CPU uses about a core and the packs plus two models about a GiB.
const DEFAULT_REQUESTS = { cpu: "1", memory: "2Gi" };

/**
 * The default requests, but none for a resource the spec limits: Kubernetes then requests the
 * limit, and a default above a smaller limit (2Gi against 1Gi) would make the Job invalid.
 */
function defaultRequests(limits: Record<string, string | number> | undefined): Record<string, string> {
  return Object.fromEntries(Object.entries(DEFAULT_REQUESTS).filter(([name]) => limits?.[name] === undefined));
}

export function buildEvalJob(o: {
  run: RunRef;
  spec: ContinualClipRunSpec;
  image: string;
  request: RoundToEvaluate;
}): Record<string, any> {
  const { run, spec, request } = o;
  const runner = spec.evaluation.runner;
  const labels = roundLabels(run, request.round, "evaluator");
  const env = podEnv(spec.source.s3, run, request.round);
  return {
    apiVersion: "batch/v1",
    kind: "Job",
    metadata: {
      name: evalJobName(run.name, request.round),
      namespace: run.namespace,
      labels,
      ownerReferences: [ownerReference(run)],
    },
    spec: {
      backoffLimit: BACKOFF_LIMIT,
      activeDeadlineSeconds: ACTIVE_DEADLINE_SECONDS,
      ttlSecondsAfterFinished: FINISHED_TTL_SECONDS,
      // Exit 2 is bad input (corrupt ONNX, broken pack): eval.json already says why; no retry.
      podFailurePolicy: podFailurePolicy(CONTAINERS.evaluator),
      template: {
        metadata: { labels },
        spec: {
          restartPolicy: "Never",
          securityContext: POD_SECURITY_CONTEXT,
          containers: [
            {
              name: CONTAINERS.evaluator,
              image: o.image,
              command: ["node", "operator/evaluation/cli.ts", ...evaluateArgs(request)],
              env,
              resources: containerResources(
                {
                  ...runner.resources,
                  requests: runner.resources?.requests ?? defaultRequests(runner.resources?.limits),
                },
                runner.gpus,
              ),
              securityContext: CONTAINER_SECURITY_CONTEXT,
              volumeMounts: [{ name: "tmp", mountPath: "/tmp" }],
            },
          ],
          volumes: [{ name: "tmp", emptyDir: {} }],
          ...(runner.nodeSelector ? { nodeSelector: runner.nodeSelector } : {}),
          ...(runner.tolerations ? { tolerations: runner.tolerations } : {}),
          ...serviceAccount(spec.trainer.serviceAccountName),
          ...(spec.trainer.imagePullSecrets ? { imagePullSecrets: spec.trainer.imagePullSecrets } : {}),
        },
      },
    },
  };
}
