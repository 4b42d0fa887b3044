# An image for grading submissions (README, "For instructors" > "Grading"): the course and its libraries,
# nothing else, run as an ordinary user. Build once with network; grade with `docker run --network none`.
#
#   docker build -t gan-course-grader .
#   docker run --rm --network none --read-only --tmpfs /tmp --security-opt seccomp=unconfined \
#     -v "$PWD/submissions":/submissions:ro -v "$PWD/out":/out -v ~/private:/private:ro gan-course-grader \
#     python -m gancourse grade /submissions --out /out/grades.csv --extra-checks /private/checks_01.py
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
# the CPU build of torch: grading runs the exercises on tiny inputs, and needs no GPU
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch torchvision

WORKDIR /course
COPY pyproject.toml README.md ./
COPY ganlib ganlib
COPY gancourse gancourse
COPY solutions solutions
COPY exercises exercises
RUN pip install . && python -c "import gancourse.grading, scipy.linalg"

# not root: the grader confines each submission in user namespaces of its own (which Docker's default seccomp
# profile forbids, hence `--security-opt seccomp=unconfined` above; without it the grader falls back to
# resource limits and a process sweep, and says so)
RUN useradd --create-home --uid 10001 grader
USER grader
# --read-only: everything written goes to the tmpfs at /tmp, or to the /out volume
ENV HOME=/tmp GANLIB_OFFLINE=1 MPLCONFIGDIR=/tmp/matplotlib
