# ruff: noqa: E501  (pprof lines are copied as printed)
"""bench.apiserver_profile's reading of ``go tool pprof -top -cum`` (text from a real profile)."""

from __future__ import annotations

from bench.apiserver_profile import summarize

TOP = """File: kube-apiserver
Type: cpu
Duration: 30s, Total samples = 33.63s (112.09%)
Showing nodes accounting for 3.73s, 11.09% of 33.63s total
      flat  flat%   sum%        cum   cum%
         0     0%     0%     13.93s 41.42%  k8s.io/apiserver/pkg/endpoints/handlers/finisher.finishRequest.func1
     0.01s  0.03% 0.089%      9.08s 27.00%  k8s.io/apiserver/pkg/endpoints/handlers.(*patcher).patchResource.func3
         0     0%  0.12%      6.05s 17.99%  k8s.io/apiextensions-apiserver/pkg/registry/customresource.(*StatusREST).Update
         0     0%  1.55%      3.60s 10.70%  k8s.io/apimachinery/pkg/util/managedfields/internal.(*FieldManager).Update
         0     0%  1.40%      4.43s 13.17%  runtime.gcBgMarkWorker
     1.13s  3.36%  7.23%      2.78s  8.27%  runtime.tryDeferToSpanScan
"""


def test_stages_take_the_cumulative_seconds_of_their_frame_and_zero_flat_parses() -> None:
    summary = summarize(TOP)
    assert summary["sampled_s"] == 33.63
    stages = summary["stages_s"]
    assert stages["requests (handler, all)"] == 13.93
    assert stages["patches (all kinds)"] == 9.08
    assert stages["Polecat status writes"] == 6.05
    assert stages["managedFields update"] == 3.6
    assert stages["Go garbage collector"] == 4.43
    assert stages["Pod status writes (kubelet/kwok)"] == 0.0  # not in this profile
    assert summary["top_flat"][0] == {"function": "runtime.tryDeferToSpanScan", "flat_s": 1.13}
