"""
The step scenario: add users in steps until the lateness of delayed
responses crosses a threshold, and say at how many users it did.

Every C{--step-seconds} (20 by default), C{--step-users} more users, started
over the first 5 s of the step.  At the end of each step the lateness p99 of
its last 10 s (locust's "current" window, so the step's own ramp is left
out) is compared with C{--lateness-threshold-ms}; the first step over it ends
the run, and the users of the last step under it are the answer (in
summary.json as C{step_threshold_users}; C{None} if no step crossed it).
"""

from locust import LoadTestShape

RAMP_SECONDS = 5.0


class StepShape(LoadTestShape):
    def __init__(self):
        super().__init__()
        self.checkedStep = 0
        self.lastGood = 0
        self.users = 0

    def tick(self):
        environment = self.runner.environment
        opts = environment.parsed_options
        step = int(self.get_run_time() // opts.step_seconds)
        if step > self.checkedStep:
            self.checkedStep = step
            entries = [e for e in environment.stats.entries.values() if e.method == "LATENESS"]
            p99 = max((e.get_current_response_time_percentile(0.99) or 0 for e in entries), default=0)
            environment.webstackSteps.append({"users": self.users, "lateness_p99_ms": p99})
            if p99 > opts.lateness_threshold_ms:
                return self._end(environment, self.lastGood)
            self.lastGood = self.users
        users = (step + 1) * opts.step_users
        if users > opts.step_max_users:
            return self._end(environment, None)
        self.users = users
        return users, opts.step_users / RAMP_SECONDS

    def _end(self, environment, answer):
        # Returning None alone would quit a distributed master before its
        # workers have stopped: stop them gracefully first, from here (locust
        # does not kill the shape's own greenlet while it stops).
        environment.webstackThresholdUsers = answer
        environment.webstackStop()
        return None
