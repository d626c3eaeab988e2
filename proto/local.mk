# proto/: infertap's OTLP subset in proto2 (see proto/otlp_common.proto for
# why).  protoc-c writes the .pb-c.[ch] into the build tree; they are never
# edited or distributed.  One protoc-c run makes all of them, recorded by a
# stamp so that parallel make runs it once (the automake manual's recipe for
# rules with several outputs).  The objects go into libinfertap.a: the code
# protoc-c 1.4.1 writes compiles without warnings under TAP_CFLAGS with both
# gcc and clang.

OTLP_PROTOS = \
	proto/otlp_common.proto \
	proto/otlp_resource.proto \
	proto/otlp_trace.proto \
	proto/otlp_metrics.proto \
	proto/otlp_logs.proto \
	proto/otlp_collector_trace.proto \
	proto/otlp_collector_metrics.proto \
	proto/otlp_collector_logs.proto
OTLP_GEN_C = \
	proto/otlp_common.pb-c.c \
	proto/otlp_resource.pb-c.c \
	proto/otlp_trace.pb-c.c \
	proto/otlp_metrics.pb-c.c \
	proto/otlp_logs.pb-c.c \
	proto/otlp_collector_trace.pb-c.c \
	proto/otlp_collector_metrics.pb-c.c \
	proto/otlp_collector_logs.pb-c.c
OTLP_GEN_H = \
	proto/otlp_common.pb-c.h \
	proto/otlp_resource.pb-c.h \
	proto/otlp_trace.pb-c.h \
	proto/otlp_metrics.pb-c.h \
	proto/otlp_logs.pb-c.h \
	proto/otlp_collector_trace.pb-c.h \
	proto/otlp_collector_metrics.pb-c.h \
	proto/otlp_collector_logs.pb-c.h

EXTRA_DIST += $(OTLP_PROTOS)
BUILT_SOURCES += $(OTLP_GEN_H) $(OTLP_GEN_C)
nodist_libinfertap_a_SOURCES = $(OTLP_GEN_C) $(OTLP_GEN_H)
CLEANFILES += $(OTLP_GEN_C) $(OTLP_GEN_H) proto/otlp.stamp proto/otlp.stamp.tmp
AM_CPPFLAGS += -I$(top_builddir)/proto

proto/otlp.stamp: $(OTLP_PROTOS)
	@$(MKDIR_P) proto
	@rm -f proto/otlp.stamp.tmp && touch proto/otlp.stamp.tmp
	$(AM_V_GEN)list=; for f in $(OTLP_PROTOS); do list="$$list $(srcdir)/$$f"; done; \
	$(PROTOC_C) --proto_path=$(srcdir)/proto --c_out=proto $$list
	@mv -f proto/otlp.stamp.tmp $@

$(OTLP_GEN_C) $(OTLP_GEN_H): proto/otlp.stamp
	@test -f $@ || { rm -f proto/otlp.stamp && $(MAKE) $(AM_MAKEFLAGS) proto/otlp.stamp; }
