# tools/sim: infertap-sim, the model-server simulator.  Everything but main.c
# goes into libsim.a so that the fuzz target drives the same connection code.
# The simulator reads requests with jansson, which refuses every body RFC 8259
# refuses, as model servers do; the proxy itself parses with cJSON.
SIM_LIBS = libsim.a $(LLHTTP_LIB) $(TAP_DEP_LIBS) $(JANSSON_LIBS)
AM_CPPFLAGS += $(JANSSON_CFLAGS)

noinst_LIBRARIES += libsim.a
libsim_a_SOURCES = \
	tools/sim/sim.h \
	tools/sim/sb.c tools/sim/sb.h \
	tools/sim/gen.c tools/sim/gen.h \
	tools/sim/http.c tools/sim/http.h \
	tools/sim/job.c tools/sim/job.h \
	tools/sim/parse.c \
	tools/sim/openai.c \
	tools/sim/native.c \
	tools/sim/metrics.c \
	tools/sim/server.c tools/sim/server.h

bin_PROGRAMS += infertap-sim
infertap_sim_SOURCES = tools/sim/main.c
infertap_sim_LDADD = $(SIM_LIBS)
