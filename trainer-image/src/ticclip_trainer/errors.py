"""Error classes that map to the trainer's exit codes (see README: Exit codes)."""

EXIT_OK = 0
EXIT_PERMANENT = 2  # invalid plan or permanent input error: the Job must not retry
EXIT_TRANSIENT = 75  # EX_TEMPFAIL: S3 unreachable, preempted, ...: the Job retries
EXIT_PREEMPTED = 143  # 128 + SIGTERM: intra-round checkpoint saved, re-run resumes


class TrainerError(Exception):
    exit_code = EXIT_TRANSIENT


class PermanentError(TrainerError):
    """Bad input that a retry cannot fix. `field` names the plan field at fault."""

    exit_code = EXIT_PERMANENT

    def __init__(self, message: str, field: str | None = None):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}" if field else message)

    def __reduce__(self):  # crosses process boundaries (loader workers) with its field
        return type(self), (self.message, self.field)


class TransientError(TrainerError):
    exit_code = EXIT_TRANSIENT


class Preempted(TrainerError):
    exit_code = EXIT_PREEMPTED
