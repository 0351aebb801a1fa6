/* Compiled with -std=c99 -pedantic -Werror by the abi_header_c99 test: the plugin
 * ABI header must stay plain C99. */
#include <edgert/plugin_abi.h>

#include <edgert/plugin_config.h>

static const edgert_plugin_descriptor d = {sizeof d, EDGERT_ABI_VERSION, EDGERT_KIND_BUSINESS, "c99", "1", "", NULL,
                                           NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
EDGERT_DECLARE_PLUGIN(d);
