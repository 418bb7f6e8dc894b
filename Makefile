# The two commands: `make demo` and `make test`. Both set everything up on a fresh machine.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
EXTRAS ?= server,agent,franka,xarm,realsense,dev

.PHONY: demo test typecheck install kernels sysdeps simdeps proto lint bench clean fuzz

demo: $(STAMP) simdeps kernels
	$(PY) -m vla_demo

test: $(STAMP) sysdeps typecheck kernels
	$(PY) -m pytest -q

# numba compiles the shield's, the trajectory's and the sim's kernels on a machine's first use
# (tens of seconds on 2 cores) and caches them: done here, not inside the first timed start-up.
kernels: $(STAMP)
	$(PY) -m robot_agent.kernels

# The four packages stay mypy --strict clean (settings in pyproject.toml's [tool.mypy]); about 20 s cold.
typecheck: $(STAMP)
	$(PY) -m mypy --strict vla safety inference_server robot_agent

install: $(STAMP) kernels

# torch==2.13.0 first: a plain `torch` requirement with nothing installed pulls a multi-GB CUDA build.
# dm-robotics-panda --no-deps: the MuJoCo sim reads only the Franka Panda and Hand model files it
# ships (MJCF and meshes, Apache-2.0); its declared dependencies (the dm_robotics stack: moma,
# agentflow, controllers...) are heavy and none of them is imported here.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[$(EXTRAS)]'
	$(PIP) install -q --no-deps 'dm-robotics-panda>=0.4.8'
	touch $(STAMP)

# Installs the Debian packages in $(1) that are missing, only as root (CI runs as root); else says so.
define apt_install
	@missing="$(strip $(1))"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing system packages: $$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "missing system packages: $$missing (what needs them fails or is skipped)"; \
	  fi; \
	fi
endef

# Mesa's EGL and its software rasteriser (swrast), with which MuJoCo renders the sim's cameras
# headless (MUJOCO_GL=egl: no display, no GPU): `make demo` and `make test` need them.
simdeps:
	$(call apt_install,$(shell \
	  ldconfig -p | grep -q libEGL_mesa.so.0 || echo libegl1 libegl-mesa0; \
	  ldconfig -p | grep -q 'libOpenGL.so.0\|libGL.so.1' || echo libgl1; \
	  ls /usr/lib/*/dri/swrast_dri.so >/dev/null 2>&1 || echo libgl1-mesa-dri))

# System packages the tests need besides: libusb for pyrealsense2, Prometheus (and promtool) for
# the monitoring tests, Debian's docker-compose (v1) whose `config` validates compose files
# without an engine.
sysdeps: simdeps
	$(call apt_install,$(shell \
	  ldconfig -p | grep -q libusb-1.0.so.0 || echo libusb-1.0-0; \
	  command -v promtool >/dev/null || echo prometheus; \
	  command -v docker-compose >/dev/null || echo docker-compose))

proto: $(STAMP)
	$(PY) -m vla._codegen

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check . || true

# Coverage-guided fuzzing (atheris) of the request and response decoders, FUZZ_SECONDS each: new
# inputs go to fuzz/work/, a crash, timeout or out-of-memory input to fuzz/crashes/ (see fuzz/).
FUZZ_SECONDS ?= 60
fuzz: $(STAMP)
	$(PY) -c 'import atheris' 2>/dev/null || $(PIP) install -q atheris
	@mkdir -p fuzz/work/request fuzz/work/response fuzz/crashes
	@for target in request response; do \
	  echo "fuzzing the $$target path for $(FUZZ_SECONDS) s"; \
	  $(PY) -m fuzz.fuzz_$$target fuzz/work/$$target fuzz/corpus/$$target -max_total_time=$(FUZZ_SECONDS) \
	    -max_len=4096 -rss_limit_mb=1024 -timeout=10 -print_final_stats=1 \
	    -artifact_prefix=fuzz/crashes/$$target- || exit 1; \
	done

bench: $(STAMP)
	@ls bench/*.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache build *.egg-info
