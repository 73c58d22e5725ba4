"""
The step scenario: add users in steps until the lateness of delayed
responses crosses a threshold, and say at how many users it did.

Every C{--step-seconds}, C{--step-users} more users.  At the end of each step
the lateness p99 of the last 10 s (locust's "current" window) is compared
with C{--lateness-threshold-ms}; the first step over it ends the run, and
the users of the last step under it are the answer (in summary.json as
C{step_threshold_users}).
"""

from locust import LoadTestShape


class StepShape(LoadTestShape):
    def __init__(self):
        super().__init__()
        self.checkedStep = 0
        self.lastGood = 0

    def tick(self):
        environment = self.runner.environment
        opts = environment.parsed_options
        step = int(self.get_run_time() // opts.step_seconds)
        if step > self.checkedStep:
            self.checkedStep = step
            entries = [e for e in environment.stats.entries.values() if e.method == "LATENESS"]
            p99 = max((e.get_current_response_time_percentile(0.99) or 0 for e in entries), default=0)
            users = step * opts.step_users
            if p99 > opts.lateness_threshold_ms:
                environment.webstackThresholdUsers = self.lastGood
                return None
            self.lastGood = users
        users = (step + 1) * opts.step_users
        if users > opts.step_max_users:
            environment.webstackThresholdUsers = None
            return None
        return users, float(opts.step_users)
