// The evaluation Job of a round: the operator's own image running `evaluate` (onnxruntime-node),
// with the resources of spec.evaluation.runner so large packs can use a GPU node. Pure.
import type { ContinualClipRunSpec } from "../api/continual-clip-run.ts";
import { CONTAINER_SECURITY_CONTEXT, INVALID_PLAN_EXIT_CODE, POD_SECURITY_CONTEXT, ownerReference, podEnv, trainLabels, type RunRef } from "../training/job.ts";
import { evalJobName } from "../training/naming.ts";
import { evaluateArgs, evaluateEnv, type RoundToEvaluate } from "./request.ts";

export const EVALUATOR_CONTAINER = "evaluator";

export function buildEvalJob(o: { run: RunRef; spec: ContinualClipRunSpec; image: string; request: RoundToEvaluate }): Record<string, any> {
  const { run, spec, request } = o;
  const runner = spec.evaluation.runner;
  const labels = trainLabels(run, request.round, "evaluator");
  const limits: Record<string, string | number> = { ...(runner.resources?.limits ?? {}) };
  if (runner.gpus > 0) limits["nvidia.com/gpu"] = runner.gpus;
  const env = podEnv(spec, run, request.round).filter((e) => !(e.name in evaluateEnv(spec)));
  for (const [name, value] of Object.entries(evaluateEnv(spec))) env.push({ name, value });
  return {
    apiVersion: "batch/v1",
    kind: "Job",
    metadata: { name: evalJobName(run.name, request.round), namespace: run.namespace, labels, ownerReferences: [ownerReference(run)] },
    spec: {
      backoffLimit: 2,
      activeDeadlineSeconds: 6 * 3600,
      ttlSecondsAfterFinished: 7 * 24 * 3600,
      // Exit 2 is bad input (corrupt ONNX, broken pack): eval.json already says why; no retry.
      podFailurePolicy: {
        rules: [
          { action: "FailJob", onExitCodes: { containerName: EVALUATOR_CONTAINER, operator: "In", values: [INVALID_PLAN_EXIT_CODE] } },
          { action: "Ignore", onPodConditions: [{ type: "DisruptionTarget", status: "True" }] },
        ],
      },
      template: {
        metadata: { labels },
        spec: {
          restartPolicy: "Never",
          securityContext: POD_SECURITY_CONTEXT,
          containers: [
            {
              name: EVALUATOR_CONTAINER,
              image: o.image,
              command: ["node", "operator/evaluation/cli.ts", ...evaluateArgs(request)],
              env,
              resources: { ...(runner.resources?.requests ? { requests: runner.resources.requests } : {}), ...(Object.keys(limits).length ? { limits } : {}) },
              securityContext: CONTAINER_SECURITY_CONTEXT,
              volumeMounts: [{ name: "tmp", mountPath: "/tmp" }],
            },
          ],
          volumes: [{ name: "tmp", emptyDir: {} }],
          ...(runner.nodeSelector ? { nodeSelector: runner.nodeSelector } : {}),
          ...(runner.tolerations ? { tolerations: runner.tolerations } : {}),
          ...(spec.trainer.serviceAccountName ? { serviceAccountName: spec.trainer.serviceAccountName } : {}),
          ...(spec.trainer.imagePullSecrets ? { imagePullSecrets: spec.trainer.imagePullSecrets } : {}),
        },
      },
    },
  };
}
